"""Train a k-fold ensemble (the founding study's recipe) and write its folder and model card.

``train_ensemble(scans, out_dir, ...)`` builds the cached training set through the
inference preprocessing, splits subjects into stratified groups (all variants of a
subject stay in one fold), trains one network per fold with mixup, and evaluates
each on its held-out fold with Monte Carlo dropout. Every epoch checkpoints, so a
stopped run resumes where it stopped.
"""

import csv
import datetime
import json
import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import __version__
from ..artifacts import ARTIFACTS
from ..artifacts.shift import SHIFT_RANGES, TRAINING_SHIFTS
from ..model.card import CARD_NAME, MASK_NAME, ensemble_id_of, file_checksum, read_card, write_json_atomic
from ..model.decision import UNCERTAIN_HALF_WIDTH_LOGIT, uncertain_band
from ..preprocessing.pipeline import (DEFAULT_SHAPE, DEFAULT_SPACING_MM, PRESMOOTH_FWHM_MM, make_grid,
                                      make_input_mask)
from ..preprocessing.resample import zscore
from .augment import SPATIAL_P, background_maps, batches, moved_backgrounds, smooth_fields
from .calibrate import add_detectors
from .dataset import build_dataset, load_volumes
from .geometry import JITTER_RANGES, SPATIAL_ORDER, SPATIAL_RANGES
from .metrics import binary_metrics, choose_threshold

LOGGER = logging.getLogger("bidsqc")

MILD_LABEL = 0.7  # training target of p_bad for mild artifacts (severe: 1, clean: 0)


def _targets(rows, artifacts):
    y_bad = np.array([MILD_LABEL if r["severity"] == "mild" else float(r["label"]) for r in rows], np.float32)
    y_art = np.zeros((len(rows), len(artifacts)), np.float32)
    for i, r in enumerate(rows):
        if r["artifact"] in artifacts:
            y_art[i, artifacts.index(r["artifact"])] = 1.0
    return y_bad, y_art


def _fold_split(rows, folds, seed):
    from sklearn.model_selection import StratifiedGroupKFold

    subjects = np.array([r["subject"] for r in rows])
    n_subjects = len(set(subjects))
    if n_subjects < folds:
        raise ValueError(f"{n_subjects} subjects cannot fill {folds} folds; use --folds {max(2, n_subjects)} or fewer")
    strata = np.array([0 if float(r["label"]) == 0 else 1 for r in rows])
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(rows)), strata, groups=subjects))


def cosine_lr(learning_rate, epochs, floor=0.05):
    """Per-epoch cosine decay from ``learning_rate`` to ``floor * learning_rate`` (resumable:
    it depends on the epoch index only)."""
    def schedule(epoch, lr=None):
        return float(learning_rate * (floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * epoch / max(1, epochs)))))
    return schedule


def recalibrate_batchnorm(model, volumes, mask, batch_size=8, n_batches=40, seed=0):
    """Re-estimate the BatchNorm moving statistics with the final weights on plain (no
    mixup, no augmentation) z-scored training volumes, so that inference-mode BatchNorm
    matches what the network saw; weights are not changed."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(volumes))
    for start in range(0, min(len(order), n_batches * batch_size) - batch_size + 1, batch_size):
        x = np.stack([zscore(volumes[i].astype(np.float32), mask) for i in order[start:start + batch_size]])
        model(x[..., None], training=True)


def mc_predict(model, x, mc_samples, batch_size=8):
    """Mean MC-dropout prediction of one model over ``mc_samples`` passes: (p_bad, artifacts)."""
    p_bad, p_art = [], []
    for _ in range(mc_samples):
        out = model.predict(x[..., None], batch_size=batch_size, verbose=0)
        p_bad.append(np.asarray(out["p_bad"])[:, 0])
        p_art.append(np.asarray(out["artifacts"]))
    return np.mean(p_bad, axis=0), np.mean(p_art, axis=0)


class _Progress:
    """Keras callback: log each epoch and checkpoint (model + epoch number) for resuming."""

    def __new__(cls, *args, **kwargs):
        import keras

        class Progress(keras.callbacks.Callback):
            def __init__(self, fold, folds, epochs, ckpt_path, state_path, started):
                super().__init__()
                self.fold, self.folds, self.epochs = fold, folds, epochs
                self.ckpt_path, self.state_path, self.started = ckpt_path, state_path, started

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items())
                                  if k in ("loss", "val_loss", "p_bad_loss", "val_p_bad_loss"))
                LOGGER.info("fold %d/%d epoch %d/%d: %s (%.0f s)", self.fold + 1, self.folds, epoch + 1,
                            self.epochs, shown, time.time() - self.started)
                tmp = self.ckpt_path.with_name("tmp_" + self.ckpt_path.name)
                self.model.save(tmp)
                os.replace(tmp, self.ckpt_path)
                state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
                history = state.get("history", [])
                history.append({k: float(v) for k, v in logs.items()})
                write_json_atomic(self.state_path, {"epoch": epoch + 1, "history": history})

        return Progress(*args, **kwargs)


def save_for_inference(model, path):
    """Save weights and architecture only (no optimizer state: a third of the size) through a
    temporary name; BatchNorm moving statistics are weights and are kept."""
    import keras

    # a model rebuilt from its config has no optimizer (clone_model may carry the compiled one)
    clean = keras.Model.from_config(model.get_config())
    clean.set_weights(model.get_weights())
    tmp = Path(path).with_name("tmp_" + Path(path).name)
    clean.save(tmp)
    os.replace(tmp, path)


def ensemble_id(out_dir, fold_files):
    """Model id: a hash of the fold model files (bidsqc.model.card.ensemble_id_of)."""
    return ensemble_id_of(out_dir, fold_files)


def _plot_curves(histories, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for fold, history in histories.items():
        epochs = np.arange(1, len(history) + 1)
        for j, key in enumerate(("p_bad_loss", "artifacts_loss")):
            ax[j].plot(epochs, [h.get(key, np.nan) for h in history], label=f"fold {fold} train")
            ax[j].plot(epochs, [h.get("val_" + key, np.nan) for h in history], "--", label=f"fold {fold} val")
    for j, title in enumerate(("p_bad loss", "artifact loss")):
        ax[j].set_title(title)
        ax[j].set_xlabel("epoch")
    ax[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    tmp = Path(path).with_name("tmp_" + Path(path).name)
    fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    os.replace(tmp, path)


@dataclass
class Grid:
    """The model grid an ensemble is trained on: shape, affine, input mask and artifact heads,
    and the card of the ensemble it is fine-tuned from (None for a new one)."""

    shape: tuple
    affine: np.ndarray
    mask: np.ndarray
    artifacts: list
    init_card: dict = None


@dataclass
class TrainingSet:
    """The cached training volumes of one run, with their targets, class weights and the
    background maps that ``augment`` fills with tissue."""

    rows: list
    errors: list
    volumes: np.ndarray
    y_bad: np.ndarray
    y_art: np.ndarray
    weights: np.ndarray
    subjects: list
    backgrounds: dict
    background_keys: list
    manifest_sha: str

    @property
    def is_bad(self):
        return (self.y_bad > 0).astype(int)


def model_grid(template_id, init_from, spacing_mm, grid_shape):
    """The ``Grid`` of a new ensemble (``spacing_mm`` over ``template_id``) or, with
    ``init_from``, of the ensemble it is fine-tuned from."""
    from ..preprocessing.templates import get_template

    template = get_template(template_id, allow_fallback=False)
    if init_from:
        init_card = read_card(init_from)
        mask = np.asarray(nib.load(Path(init_from) / init_card["input"]["mask_file"]).dataobj) > 0
        return Grid(tuple(init_card["input"]["shape"]), np.asarray(init_card["input"]["affine"]), mask,
                    list(init_card["artifacts"]), init_card)
    grid_affine = make_grid(template, spacing_mm, grid_shape)
    return Grid(tuple(grid_shape), grid_affine, make_input_mask(template, grid_shape, grid_affine), list(ARTIFACTS))


def training_set(scans, cache_dir, template_id, grid, n_clean_variants, seed, nprocs, exclude_mild,
                 raw_scan_variation, exclude_artifacts, registration_jitter, shift_variation=0.0):
    """Build (or resume) the cached training volumes of ``scans`` on ``grid`` and load them
    with their targets: a ``TrainingSet``. With ``exclude_mild`` only severe variants are
    planned, so no mild volume is built or trained on."""
    rows, errors = build_dataset(scans, cache_dir, template_id, grid.shape, grid.affine, grid.mask,
                                 n_clean_variants=n_clean_variants, seed=seed, nprocs=nprocs,
                                 severities=("severe",) if exclude_mild else ("mild", "severe"),
                                 raw_scan_variation=raw_scan_variation, skip_artifacts=exclude_artifacts,
                                 move_p=registration_jitter, shift_p=shift_variation)
    if errors:
        LOGGER.warning("dataset: %d volumes failed and are left out", len(errors))
    if exclude_artifacts:
        LOGGER.info("left out: the %s volumes (native-space detectors cover them)", ", ".join(exclude_artifacts))
    manifest_sha = file_checksum(Path(cache_dir) / "manifest.tsv")
    volumes = load_volumes(cache_dir, rows)
    y_bad, y_art = _targets(rows, grid.artifacts)
    is_bad = (y_bad > 0).astype(int)
    n_bad, n_clean = int(is_bad.sum()), int((1 - is_bad).sum())
    weights = np.where(is_bad == 1, 1.0, n_bad / max(1, n_clean)).astype(np.float32)
    subjects = [r["subject"] for r in rows]
    backgrounds = background_maps(rows, volumes, grid.mask, distances=raw_scan_variation)
    background_keys = moved_backgrounds(rows, backgrounds, grid.mask, distances=raw_scan_variation)
    LOGGER.info("training set: %d volumes (%d clean, %d bad) from %d subjects; grid %s",
                len(rows), n_clean, n_bad, len(set(subjects)), grid.shape)
    return TrainingSet(rows, errors, volumes, y_bad, y_art, weights, subjects, backgrounds, background_keys,
                       manifest_sha)


def _fold_model(fold, folds, state, final, ckpt, grid, init_from, network):
    """The fold's model to train or use: its finished file, its checkpoint, the fine-tuned
    ensemble's fold, or a new network (``network``: build_network's keyword arguments)."""
    import keras

    from ..model.network import build_network

    if final.exists() and state.get("done"):
        LOGGER.info("fold %d/%d: already trained, loading %s", fold + 1, folds, final.name)
        return keras.models.load_model(final, compile=False, safe_mode=True), True
    if ckpt.exists() and state["epoch"] > 0:
        LOGGER.info("fold %d/%d: resuming after epoch %d", fold + 1, folds, state["epoch"])
        return keras.models.load_model(ckpt, compile=False, safe_mode=True), False
    if init_from:
        src = Path(init_from) / grid.init_card["folds"][fold % len(grid.init_card["folds"])]
        LOGGER.info("fold %d/%d: fine-tuning from %s", fold + 1, folds, src)
        return keras.models.load_model(src, compile=False, safe_mode=True), False
    return build_network(grid.shape, len(grid.artifacts), **network), False


def train_fold(fold, folds, train_idx, val_idx, data, grid, fields, val_x_all, out_dir, work, settings, started):
    """Train (or resume, or load) fold ``fold``'s network on ``train_idx`` of ``data``,
    validating on ``val_idx``; re-estimate its BatchNorm statistics and save it for
    inference. ``settings``: train_ensemble's arguments. Returns (model, history)."""
    import keras
    import tensorflow as tf

    from .losses import get_loss

    final = out_dir / f"fold_{fold:02d}.keras"
    ckpt = work / f"fold_{fold:02d}.keras"
    state_path = work / f"fold_{fold:02d}.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"epoch": 0, "history": []}
    keras.utils.set_random_seed(settings["seed"] + fold)
    network = {k: settings[k] for k in ("levels", "base_filters", "dropout", "dense_dropout")}
    model, done = _fold_model(fold, folds, state, final, ckpt, grid, settings["init_from"], network)
    if done:
        return model, state.get("history", [])
    batch_size, epochs = settings["batch_size"], settings["epochs"]
    model.compile(optimizer=keras.optimizers.Adam(settings["learning_rate"]),
                  loss={"p_bad": get_loss(settings["loss"]), "artifacts": keras.losses.BinaryCrossentropy()},
                  loss_weights={"p_bad": 1.0, "artifacts": 0.5})
    rng = np.random.default_rng(settings["seed"] * 1000 + fold * 100 + state["epoch"])
    steps = max(1, len(train_idx) // batch_size)  # a fold of fewer volumes than a batch still trains

    def generator(rng=rng, train_idx=train_idx):
        while True:
            yield from batches(train_idx, data.volumes, data.y_bad, data.y_art, data.weights, grid.mask,
                               data.backgrounds, data.background_keys, batch_size, settings["mixup_alpha"], rng,
                               fields, layered_scalp=settings["raw_scan_variation"],
                               spatial=settings["spatial_augment"])

    signature = (tf.TensorSpec((batch_size,) + tuple(grid.shape) + (1,), tf.float32),
                 {"p_bad": tf.TensorSpec((batch_size, 1), tf.float32),
                  "artifacts": tf.TensorSpec((batch_size, len(grid.artifacts)), tf.float32)},
                 tf.TensorSpec((batch_size,), tf.float32))
    dataset = tf.data.Dataset.from_generator(generator, output_signature=signature).prefetch(2)
    val = (val_x_all[val_idx][..., None],
           {"p_bad": np.minimum(data.y_bad[val_idx], 1)[:, None], "artifacts": data.y_art[val_idx]})
    if state["epoch"] < epochs:
        model.fit(dataset, epochs=epochs, initial_epoch=state["epoch"], steps_per_epoch=steps,
                  validation_data=val, validation_batch_size=batch_size, verbose=0,
                  callbacks=[keras.callbacks.LearningRateScheduler(cosine_lr(settings["learning_rate"], epochs)),
                             _Progress(fold, folds, epochs, ckpt, state_path, started)])
    recalibrate_batchnorm(model, data.volumes[train_idx], grid.mask, batch_size=batch_size,
                          seed=settings["seed"] + fold)
    save_for_inference(model, final)
    state = json.loads(state_path.read_text()) if state_path.exists() else {"history": []}
    state["done"] = True
    write_json_atomic(state_path, state)
    return model, state.get("history", [])


def write_oof(path, rows, oof_bad):
    """The out-of-fold p_bad of every training volume (``cv_predictions.tsv``), through a temporary file."""
    with open(path.with_suffix(".tmp"), "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["subject", "variant", "artifact", "severity", "label", "p_bad"])
        for r, p in zip(rows, oof_bad):
            writer.writerow([r["subject"], r["variant"], r["artifact"], r["severity"], r["label"], f"{p:.4f}"])
    os.replace(path.with_suffix(".tmp"), path)


def model_card(model_id, grid, template_id, fold_files, threshold, specificity_reached, data, fold_metrics,
               pooled, settings, seconds):
    """The model card of a trained ensemble (before its detectors and naming are added)."""
    is_bad = data.is_bad
    s = settings
    return {
        "model_id": model_id,
        "bidsqc_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "input": {"shape": list(grid.shape), "spacing_mm": float(grid.affine[0, 0]),
                  "affine": np.asarray(grid.affine).round(4).tolist(), "template": template_id,
                  "space": f"{template_id} world coordinates (mm)",
                  "normalisation": "zscore inside the input mask, zero outside",
                  "presmooth_fwhm_mm": PRESMOOTH_FWHM_MM,
                  "mask_file": MASK_NAME, "registration": "affine (SimpleITK, Mattes MI)"},
        "artifacts": grid.artifacts,
        "folds": fold_files,
        "mc_samples": int(s["mc_samples"]),
        "decision": {"threshold": threshold,
                     "uncertain_band": list(uncertain_band(threshold)),
                     "rule": "fail if p_bad >= threshold, pass below; uncertain inside the band or where "
                             "the fold models' mean p_bad fall on both sides of the threshold",
                     "threshold_choice": "best balanced accuracy with specificity >= 0.95 on out-of-fold predictions"
                                         if specificity_reached else "no threshold reached out-of-fold specificity "
                                         "0.95: the one with the highest (then the best balanced accuracy)",
                     "specificity_target_reached": specificity_reached,
                     "band_choice": f"+-{UNCERTAIN_HALF_WIDTH_LOGIT:.2f} in log-odds around the threshold "
                                    "(+-0.15 around 0.5)"},
        "architecture": {"levels": s["levels"], "base_filters": s["base_filters"], "dropout": s["dropout"],
                         "dense_units": [256, 64], "dense_dropout": s["dense_dropout"],
                         "heads": {"p_bad": "sigmoid", "artifacts": "sigmoid per artifact type"}},
        "training": {"folds": s["folds"], "epochs": s["epochs"], "batch_size": s["batch_size"], "loss": s["loss"],
                     "mixup_alpha": s["mixup_alpha"], "learning_rate": s["learning_rate"], "seed": s["seed"],
                     "lr_schedule": "per-epoch cosine decay to 5% of learning_rate",
                     "batchnorm": "momentum 0.9; moving statistics re-estimated on plain training volumes "
                                  "after each fold's training",
                     "mild_label": None if s["exclude_mild"] else MILD_LABEL, "exclude_mild": s["exclude_mild"],
                     "n_clean_variants": s["n_clean_variants"],
                     "raw_scan_variation": bool(s["raw_scan_variation"]),
                     "spatial_augment": {"p": SPATIAL_P, **SPATIAL_RANGES, "spline_order": SPATIAL_ORDER}
                     if s["spatial_augment"] else None,
                     "registration_jitter": {"p": s["registration_jitter"], **JITTER_RANGES}
                     if s["registration_jitter"] else None,
                     "shift_variation": {"p": s["shift_variation"], "shifts": list(TRAINING_SHIFTS),
                                         "ranges": SHIFT_RANGES} if s["shift_variation"] else None,
                     "excluded_artifacts": sorted(s["exclude_artifacts"]),
                     "n_volumes": len(data.rows), "n_clean": int((1 - is_bad).sum()), "n_bad": int(is_bad.sum()),
                     "n_subjects": len(set(data.subjects)), "dataset_manifest_sha256": data.manifest_sha,
                     "dataset_errors": data.errors, "init_from": str(s["init_from"]) if s["init_from"] else None,
                     "holdout": s["holdout"], "seconds": round(seconds, 1)},
        "metrics": {"per_fold": fold_metrics, "pooled": pooled},
        "library_versions": _versions(),
    }


def train_ensemble(scans, out_dir, cache_dir, template_id="MNI152NLin6Asym", folds=10, epochs=8,
                   batch_size=8, mixup_alpha=0.3, loss="bce", learning_rate=1e-3, init_from=None,
                   n_clean_variants=2, seed=0, nprocs=2, mc_samples=4, levels=4, base_filters=16,
                   dropout=0.2, dense_dropout=0.1, spacing_mm=DEFAULT_SPACING_MM, grid_shape=DEFAULT_SHAPE,
                   holdout=None, exclude_mild=False, raw_scan_variation=False, exclude_artifacts=(),
                   detectors=True, spatial_augment=False, registration_jitter=0.0, shift_variation=0.0):
    """Train a ``folds``-fold ensemble on ``scans``; write it to ``out_dir``; return its card.

    ``exclude_artifacts``: artifact types whose simulated volumes the network does not train on
    (cached but left out), for types a native-space detector covers (bidsqc.scores.DETECTORS).
    ``detectors``: calibrate those detectors on the training scans into the card.
    ``spatial_augment``: random affine augmentation on the grid (``augment``).
    ``registration_jitter``: the share of the training volumes (all but the subjects' originals)
    moved by a random affine inside their one resampling at registration instead
    (``bidsqc.training.dataset.add_moves``), built into the cache. ``shift_variation``: the
    share of them (clean and with artifacts) made to look like another study's scan first
    (``bidsqc.training.dataset.add_shifts``); the detectors are calibrated on the same volumes."""
    import keras

    settings = dict(locals())
    started = time.time()
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    work = out_dir / "checkpoints"
    work.mkdir(parents=True, exist_ok=True)
    grid = model_grid(template_id, init_from, spacing_mm, grid_shape)
    unknown = sorted(set(exclude_artifacts) - set(grid.artifacts))
    if unknown:
        raise ValueError(f"--exclude-artifacts: unknown artifact type(s) {', '.join(unknown)}; "
                         f"known: {', '.join(grid.artifacts)}")
    mask_tmp = out_dir / f"tmp_{MASK_NAME}"
    nib.save(nib.Nifti1Image(grid.mask.astype(np.uint8), grid.affine), mask_tmp)
    os.replace(mask_tmp, out_dir / MASK_NAME)

    data = training_set(scans, cache_dir, template_id, grid, n_clean_variants, seed, nprocs, exclude_mild,
                        raw_scan_variation, exclude_artifacts, registration_jitter, shift_variation)
    rows, is_bad, subjects = data.rows, data.is_bad, data.subjects
    splits = _fold_split(rows, folds, seed)
    fields = smooth_fields(grid.shape, 8, np.random.default_rng(seed))
    val_x_all = np.stack([zscore(v.astype(np.float32), grid.mask) for v in data.volumes])

    oof_bad = np.full(len(rows), np.nan, np.float32)
    oof_art = np.full((len(rows), len(grid.artifacts)), np.nan, np.float32)
    fold_files, fold_metrics, histories = [], [], {}
    for fold, (train_idx, val_idx) in enumerate(splits):
        model, histories[fold] = train_fold(fold, folds, train_idx, val_idx, data, grid, fields, val_x_all,
                                            out_dir, work, settings, started)
        p_bad, p_art = mc_predict(model, val_x_all[val_idx], mc_samples)
        oof_bad[val_idx], oof_art[val_idx] = p_bad, p_art
        metrics = binary_metrics(is_bad[val_idx], p_bad)
        metrics["fold"] = fold
        metrics["subjects"] = sorted({subjects[i] for i in val_idx})
        fold_metrics.append(metrics)
        fold_files.append(f"fold_{fold:02d}.keras")
        LOGGER.info("fold %d/%d held-out: AUC %.3f, accuracy %.3f, sensitivity %.3f, specificity %.3f",
                    fold + 1, folds, metrics["auc"], metrics["accuracy"], metrics["sensitivity"],
                    metrics["specificity"])
        keras.backend.clear_session()

    threshold, specificity_reached = choose_threshold(is_bad, oof_bad)
    pooled = binary_metrics(is_bad, oof_bad, threshold)
    if not specificity_reached:
        LOGGER.warning("no threshold reached out-of-fold specificity 0.95; threshold %.2f has the highest (%.3f)",
                       threshold, pooled["specificity"])
    severe = np.array([r["severity"] == "severe" for r in rows])
    art_idx = np.array([grid.artifacts.index(r["artifact"]) if r["artifact"] in grid.artifacts else -1
                        for r in rows])
    if severe.any():
        pooled["artifact_top1_severe"] = round(float((oof_art[severe].argmax(axis=1) == art_idx[severe]).mean()), 4)
    _plot_curves(histories, out_dir / "training_curves.png")
    write_oof(out_dir / "cv_predictions.tsv", rows, oof_bad)

    model_id = ensemble_id(out_dir, fold_files)
    card = model_card(model_id, grid, template_id, fold_files, threshold, specificity_reached, data, fold_metrics,
                      pooled, settings, time.time() - started)
    write_json_atomic(out_dir / CARD_NAME, card)
    if detectors:
        try:
            card = add_detectors(out_dir, scans, cache_dir, seed=seed, n_clean_variants=n_clean_variants,
                                 nprocs=nprocs)
        except ValueError as exc:  # e.g. only rated-bad scans: the ensemble stands, rated by its network
            LOGGER.warning("%s: written without the native-space detectors or artifact naming (%s); add them "
                           "with bidsqc-train --detectors-only", out_dir, exc)
            card = read_card(out_dir)
    shutil.rmtree(work, ignore_errors=True)
    LOGGER.info("ensemble %s written to %s: pooled CV AUC %.3f, accuracy %.3f (threshold %.2f) in %.0f s",
                model_id, out_dir, pooled["auc"], pooled["accuracy"], threshold, time.time() - started)
    return card


def _versions():
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("tensorflow-cpu", "tensorflow", "keras", "numpy", "nibabel", "SimpleITK", "scikit-learn",
                 "scipy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out
