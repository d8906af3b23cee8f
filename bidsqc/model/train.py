"""Train a k-fold ensemble (the founding study's recipe) and write its folder and model card.

``train_ensemble(scans, out_dir, ...)`` builds the cached training set through the
inference preprocessing, splits subjects into stratified groups (all variants of a
subject stay in one fold), trains one network per fold with mixup, and evaluates
each on its held-out fold with Monte Carlo dropout. Every epoch checkpoints, so a
stopped run resumes where it stopped.
"""

import csv
import datetime
import hashlib
import json
import logging
import os
import platform
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .. import __version__
from ..artifacts import ARTIFACTS
from ..preprocessing.pipeline import (DEFAULT_SHAPE, DEFAULT_SPACING_MM, PRESMOOTH_FWHM_MM, make_grid,
                                      make_input_mask)
from ..preprocessing.resample import zscore
from .card import CARD_NAME, MASK_NAME, ModelCardError, read_card, write_json_atomic
from .dataset import (assign_keys, build_dataset, detector_table, file_checksum, load_volumes, naming_jobs,
                      plan_variants)
from .ensemble import UNCERTAIN_HALF_WIDTH_LOGIT, uncertain_band
from .geometry import JITTER_RANGES, SPATIAL_ORDER, SPATIAL_RANGES, jitter_move, random_affine, spatial_transform

LOGGER = logging.getLogger("bidsqc")

MILD_LABEL = 0.7  # training target of p_bad for mild artifacts (severe: 1, clean: 0)
# --spatial-augment: a random affine (geometry.random_affine) applied on the model grid with
# probability SPATIAL_P to each training volume
SPATIAL_P = 0.8


# --------------------------------------------------------------------------- metrics
def binary_metrics(y_true, p_bad, threshold=0.5):
    """accuracy, sensitivity, specificity, balanced accuracy and AUC of ``p_bad`` for
    binary ``y_true`` (1 = bad)."""
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    pred = (np.asarray(p_bad) >= threshold).astype(int)
    tp = int(((pred == 1) & (y_true == 1)).sum())
    tn = int(((pred == 0) & (y_true == 0)).sum())
    pos, neg = int((y_true == 1).sum()), int((y_true == 0).sum())
    sens = tp / pos if pos else float("nan")
    spec = tn / neg if neg else float("nan")
    auc = float(roc_auc_score(y_true, p_bad)) if pos and neg else float("nan")
    return {"n": int(len(y_true)), "n_bad": pos, "accuracy": round((tp + tn) / max(1, len(y_true)), 4),
            "sensitivity": round(sens, 4), "specificity": round(spec, 4),
            "balanced_accuracy": round((sens + spec) / 2, 4), "auc": round(auc, 4)}


def choose_threshold(y_true, p_bad, min_specificity=0.95):
    """Threshold (0.20-0.90) with the best balanced accuracy among those keeping specificity
    >= ``min_specificity`` on the out-of-fold predictions. Where none reaches it, the one with
    the highest specificity (then the best balanced accuracy): failing clean scans is what
    sends users back to rating by eye, so specificity comes first. Returns (threshold,
    whether ``min_specificity`` was reached)."""
    y_true = np.asarray(y_true).astype(int)
    scored = [(binary_metrics(y_true, p_bad, t), float(t)) for t in np.round(np.arange(0.2, 0.91, 0.01), 2)]
    reaching = [(m["balanced_accuracy"], t) for m, t in scored if m["specificity"] >= min_specificity]
    if reaching:
        return max(reaching, key=lambda r: (r[0], -r[1]))[1], True  # ties: the lowest
    return max(scored, key=lambda s: (s[0]["specificity"], s[0]["balanced_accuracy"], -s[1]))[1], False


# --------------------------------------------------------------------------- augmentation
def smooth_fields(shape, n, rng, sigma=3.0):
    """``n`` smooth random fields in 0..1, (n, *shape) float32, for background filling."""
    fields = []
    for _ in range(n):
        f = ndimage.gaussian_filter(rng.random(shape).astype(np.float32), sigma)
        f = (f - f.min()) / max(float(f.max() - f.min()), 1e-6)
        fields.append(f)
    return np.stack(fields).astype(np.float32)


def scalp_layers(background, distance, rng, fields):
    """Layered non-brain tissue for the background voxels of a skull-stripped scan, the way
    it lies around the brain in a raw head: CSF and dura next to the brain, then skull,
    then bright marrow and scalp fat. ``distance`` is each voxel's distance (grid voxels)
    from the subject's brain; layer thicknesses and intensities are drawn, and the layer
    boundaries and brightness are modulated by two smooth random fields, so the layers
    wave and vary as across heads and scanners. Returns (grid) float32, zero off ``background``."""
    wave = fields[rng.integers(len(fields))]
    shade = fields[rng.integers(len(fields))]
    depth = distance + rng.uniform(0.5, 2.0) * (wave - 0.5)
    csf_width, bone_width = rng.uniform(0.3, 1.5), rng.uniform(0.5, 1.5)
    csf, bone, fat = rng.uniform(0.05, 0.4), rng.uniform(0.02, 0.35), rng.uniform(0.4, 1.0)
    layers = np.where(depth < csf_width, csf, np.where(depth < csf_width + bone_width, bone, fat))
    layers = ndimage.gaussian_filter(layers.astype(np.float32), 0.6) * (0.75 + 0.5 * shade)
    return np.where(background, layers, 0).astype(np.float32)


def brain_distance(mask, background):
    """Distance (grid voxels) of every voxel from the subject's brain (``mask`` minus ``background``)."""
    brain = mask & ~background
    if not brain.any():
        return np.zeros(mask.shape, np.float32)
    return ndimage.distance_transform_edt(~brain).astype(np.float32)


def augment(volume, mask, background, rng, fields, distance=None, layered_scalp=False, spatial=False):
    """Training-time augmentation of one cached volume (0..1 scale) then z-scoring.

    - contrast: intensities raised to a power in 0.7..1.4,
    - tissue outside the brain, for the subject's background voxels inside the input mask
      (zero in skull-stripped scans), so "no skull" is never a cue for "good": with p=0.5
      smooth random tissue of random brightness, else none; with ``layered_scalp``
      (``--raw-scan-variation``) p=0.5 layered CSF, skull and scalp as in a raw head
      (``scalp_layers``), p=0.2 smooth random tissue, else none. Tissue is added, not
      substituted, so ghosts, wrap-around and noise in that background stay visible,
    - with ``spatial`` (``--spatial-augment``), p=SPATIAL_P: a random affine (``random_affine``,
      SPATIAL_RANGES) on the grid, cubic interpolation, so that registration's residual
      misalignment and head shape are no cue; the input mask is applied afterwards, as at
      inference,
    - left-right flip with p=0.5.
    """
    v = np.clip(volume.astype(np.float32), 0, None) ** rng.uniform(0.7, 1.4)
    if background is not None:
        branch = rng.random()
        if layered_scalp and branch < 0.5:
            if distance is None:
                distance = brain_distance(mask, background)
            v = v + scalp_layers(background, distance, rng, fields)
        elif branch < (0.7 if layered_scalp else 0.5):
            field = fields[rng.integers(len(fields))]
            level = rng.uniform(0.05, 0.7)
            v = np.where(background, v + level * (0.5 + field), v)
    if spatial and rng.random() < SPATIAL_P:
        v = np.clip(spatial_transform(v, *random_affine(rng)), 0, None)  # cubic overshoot
    if rng.random() < 0.5:
        v = v[::-1]
    return zscore(np.ascontiguousarray(v), mask)


def background_maps(rows, volumes, mask, distances=False):
    """Per subject: (voxels inside ``mask`` that are background in its clean original scan,
    their distance from its brain where ``distances`` (for ``scalp_layers``), else None)."""
    maps = {}
    for row, volume in zip(rows, volumes):
        if row["variant"] == "original":
            background = mask & (volume.astype(np.float32) < 0.03)
            maps[row["subject"]] = (background, brain_distance(mask, background) if distances else None)
    return maps


def moved_backgrounds(rows, backgrounds, mask, distances=False):
    """Background maps for rows moved at registration (``--registration-jitter``): the
    subject's background (found on its unmoved original, ``background_maps``) moved the same
    way (nearest neighbour), keyed (subject, move_seed), so that added tissue stays outside
    the moved brain. Returns the background key of every row (the subject where unmoved)."""
    keys = []
    for row in rows:
        seed = row.get("move_seed")
        if seed in (None, "") or row["subject"] not in backgrounds:
            keys.append(row["subject"])
            continue
        key = (row["subject"], int(seed))
        if key not in backgrounds:
            matrix, shift = jitter_move(seed)
            original = backgrounds[row["subject"]][0].astype(np.float32)
            moved = mask & (spatial_transform(original, matrix, shift, order=0) > 0.5)
            backgrounds[key] = (moved, brain_distance(mask, moved) if distances else None)
        keys.append(key)
    return keys


def batches(indices, volumes, y_bad, y_art, weights, mask, backgrounds, subjects, batch_size,
            mixup_alpha, rng, fields, layered_scalp=False, spatial=False):
    """Yield one epoch of augmented, mixed-up batches (x, {p_bad, artifacts}, weights)."""
    order = rng.permutation(indices)
    for start in range(0, len(order) - batch_size + 1, batch_size):
        idx = order[start:start + batch_size]
        x = []
        for i in idx:
            background, distance = backgrounds.get(subjects[i], (None, None))
            x.append(augment(volumes[i], mask, background, rng, fields, distance=distance,
                             layered_scalp=layered_scalp, spatial=spatial))
        x = np.stack(x)
        yb, ya, w = y_bad[idx], y_art[idx], weights[idx]
        if mixup_alpha > 0:
            lam = rng.beta(mixup_alpha, mixup_alpha, size=len(idx)).astype(np.float32)
            perm = rng.permutation(len(idx))
            x = lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * x[perm]
            yb = lam * yb + (1 - lam) * yb[perm]
            ya = lam[:, None] * ya + (1 - lam[:, None]) * ya[perm]
            w = lam * w + (1 - lam) * w[perm]
        yield x[..., None], {"p_bad": yb[:, None], "artifacts": ya}, w


# --------------------------------------------------------------------------- training
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
    """Model id: a hash of the fold model files."""
    return "bidsqc-" + hashlib.sha1("".join(file_checksum(Path(out_dir) / f) for f in fold_files)
                                    .encode()).hexdigest()[:12]


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


def read_labels(labels_tsv):
    """Scans from a ratings TSV: columns source_file, rating (good/bad), optional artifact and
    subject. Relative source_file paths are relative to the TSV's folder."""
    scans = []
    base = Path(labels_tsv).resolve().parent
    with open(labels_tsv, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle, delimiter="\t"), start=2):
            if "source_file" not in row or "rating" not in row:
                raise ValueError(f"{labels_tsv}: needs columns source_file and rating")
            rating = row["rating"].strip().lower()
            if rating not in ("good", "bad"):
                raise ValueError(f"{labels_tsv}:{line}: rating {row['rating']!r} is not good or bad")
            path = Path(row["source_file"])
            path = path if path.is_absolute() else base / path
            subject = (row.get("subject") or "").strip() or path.name.split("_")[0]
            scans.append({"source_file": str(path), "subject": subject, "label": rating,
                          "artifact": (row.get("artifact") or "").strip() or None})
    if not scans:
        raise ValueError(f"{labels_tsv}: no rated scans")
    return scans


def scans_from_folder(folder):
    """Every NIfTI under ``folder`` as a presumed-good scan (its subject from sub-<label>)."""
    scans = []
    for path in sorted(Path(folder).rglob("*.nii*")):
        subject = next((p for p in path.name.split("_") if p.startswith("sub-")), path.name.split(".")[0])
        scans.append({"source_file": str(path), "subject": subject, "label": "good"})
    if not scans:
        raise ValueError(f"{folder}: no NIfTI files found")
    return scans


def native_plan(scans, seed=0, n_clean_variants=2):
    """The volumes the native-space scores are calibrated on: each good scan as is,
    ``n_clean_variants`` clean variations with raw-scan noise and sharpening, one resliced
    with a coarser axis (a clean anisotropic acquisition), and the severe version of every
    artifact, drawn with the training plan's seeds (so with ``--exclude-mild`` they are the
    training volumes themselves). The mild version of every artifact and missing coverage
    cut off the array (``naming_jobs``) are scored too, for the artifact naming only."""
    jobs = plan_variants(scans, n_clean_variants=n_clean_variants, severities=("severe",), seed=seed,
                         artifacts=ARTIFACTS, raw_scan_variation=True)
    rng = np.random.default_rng([seed, 1])  # its own stream: the other jobs keep the training plan's seeds
    for job in [j for j in jobs if j["variant"] == "original"]:
        jobs.append(dict(job, variant="anisotropic0", artifact="anisotropic", seed=int(rng.integers(2 ** 31))))
    return assign_keys(jobs + naming_jobs(scans, seed=seed), "native")


def calibrate_detectors(jobs, table, n_clean_variants=2):
    """Calibrate the native-space detectors (bidsqc.detectors.DETECTORS) on the scores
    ``table`` of the ``native_plan`` ``jobs``: clean volumes against the severe volumes of
    each detector's artifact. Returns the model card's ``detectors`` entry."""
    from ..detectors import DETECTORS, calibrate

    clean = [table[j["key"]] for j in jobs if j["label"] == 0.0 and j["key"] in table]
    entry = {"space": "the conformed (RAS) image on its own voxel grid, before registration; the slice score "
                      "leaves out a cut into zero-filled end planes outside the registered template brain",
             "clean": f"each good training scan, {n_clean_variants} clean variations with raw-scan noise and "
                      "one resliced with a 1.1-1.6 times coarser axis",
             "artifact": "the severe simulated version of each good training scan",
             "rule": "each detector's score maps to the p_bad scale (its threshold at the ensemble's threshold, "
                     "its low/high at the uncertain band, 0 below low); p_bad is the largest of the "
                     "network's and the detectors'"}
    for name in DETECTORS:
        bad = [table[j["key"]][name] for j in jobs
               if j["artifact"] == name and j["severity"] == "severe" and j["key"] in table]
        entry[name] = calibrate([c[name] for c in clean], bad)
        LOGGER.info("detector %s: threshold %.4g (clean up to %.4g, artifact from %.4g); training "
                    "sensitivity %.3f, specificity %.3f", name, entry[name]["threshold"], entry[name]["low"],
                    entry[name]["high"], entry[name]["sensitivity"], entry[name]["specificity"])
    return entry


def out_of_fold_artifacts(ensemble, rows, volumes):
    """Each row's per-artifact probabilities from the fold model that did not train on its
    subject (the card's per-fold held-out subjects), with the MC-dropout passes and seeding
    the ensemble rates scans with: (n, artifacts), NaN where no fold held the subject out."""
    fold_of = {}
    for f, fold in enumerate(ensemble.card["metrics"]["per_fold"]):
        for subject in fold.get("subjects", []):
            fold_of[subject] = f
    out = np.full((len(rows), len(ensemble.artifacts)), np.nan, np.float32)
    for f in range(len(ensemble.models)):
        index = [i for i, r in enumerate(rows) if fold_of.get(r["subject"]) == f]
        if index:
            x = np.stack([zscore(volumes[i].astype(np.float32), ensemble.mask) for i in index])
            result = ensemble.predict(x, folds=[f])
            out[index] = np.stack([result.p_artifacts[a] for a in ensemble.artifacts], axis=1)
    return out


def fit_naming(model_dir, scans, cache_dir, jobs, table, seed=0, n_clean_variants=2, nprocs=2):
    """Fit the artifact naming (bidsqc.model.naming) on the artifact volumes of the
    ``native_plan``, severe, mild and cropped: their native scores from ``table`` and the out-of-fold probabilities
    of the ensemble in ``model_dir`` on their preprocessed volumes (built into ``cache_dir``
    where the training did not already). Returns the model card's ``naming`` entry."""
    from .ensemble import Ensemble
    from .naming import fit

    ensemble = Ensemble.load(model_dir)
    training = ensemble.card.get("training", {})
    jitter = training.get("registration_jitter") or {}
    ranges = {k: v for k, v in jitter.items() if k != "p"}
    if ranges not in ({}, JITTER_RANGES):
        raise ModelCardError(f"{Path(model_dir) / CARD_NAME}: trained with --registration-jitter moves drawn from "
                             f"{ranges}, but this bidsqc draws them from {JITTER_RANGES}; refit the naming with "
                             "the bidsqc version that trained it")
    rows, _ = build_dataset(scans, cache_dir, ensemble.card["input"]["template"], ensemble.grid_shape,
                            ensemble.grid_affine, ensemble.mask, n_clean_variants=n_clean_variants, seed=seed,
                            nprocs=nprocs, severities=("severe",),
                            raw_scan_variation=bool(training.get("raw_scan_variation", False)),
                            move_p=jitter.get("p", 0.0), naming=True)
    native = {(j["subject"], j["variant"]): j["key"] for j in jobs if j["artifact"] in ARTIFACTS}
    rows = [r for r in rows if r["artifact"] in ARTIFACTS and native.get((r["subject"], r["variant"])) in table]
    volumes = load_volumes(cache_dir, rows)
    p_art = out_of_fold_artifacts(ensemble, rows, volumes)
    keep = [i for i in range(len(rows)) if np.isfinite(p_art[i]).all()]
    if not keep:
        raise ValueError("no training volume has an out-of-fold prediction to fit the artifact naming on")
    entry = fit(p_art[keep], [table[native[(rows[i]["subject"], rows[i]["variant"])]] for i in keep],
                [rows[i]["artifact"] for i in keep], [rows[i]["subject"] for i in keep], ensemble.artifacts,
                severities=[rows[i]["severity"] for i in keep])
    LOGGER.info("artifact naming: top-1 %s (grouped CV on %d training volumes; %s by severity) against the network "
                "heads' %.3f", entry["cv_top1"], entry["n_volumes"], entry.get("cv_top1_by_severity"),
                entry["network_top1"])
    return entry


def add_detectors(model_dir, scans, cache_dir, seed=0, n_clean_variants=2, nprocs=2):
    """Score the ``native_plan`` of ``scans`` (cached in ``cache_dir``/detectors.tsv),
    calibrate the detectors and fit the artifact naming, and store both in the model card
    of ``model_dir``."""
    jobs = native_plan(scans, seed=seed, n_clean_variants=n_clean_variants)
    card = read_card(model_dir)
    table = detector_table(jobs, cache_dir, nprocs=nprocs, template_id=card["input"]["template"])
    card["detectors"] = calibrate_detectors(jobs, table, n_clean_variants=n_clean_variants)
    write_json_atomic(Path(model_dir) / CARD_NAME, card)
    card["naming"] = fit_naming(model_dir, scans, cache_dir, jobs, table, seed=seed,
                                n_clean_variants=n_clean_variants, nprocs=nprocs)
    write_json_atomic(Path(model_dir) / CARD_NAME, card)
    return card


def train_ensemble(scans, out_dir, cache_dir, template_id="MNI152NLin6Asym", folds=10, epochs=8,
                   batch_size=8, mixup_alpha=0.3, loss="bce", learning_rate=1e-3, init_from=None,
                   n_clean_variants=2, seed=0, nprocs=2, mc_samples=4, levels=4, base_filters=16,
                   dropout=0.2, dense_dropout=0.1, spacing_mm=DEFAULT_SPACING_MM, grid_shape=DEFAULT_SHAPE,
                   holdout=None, exclude_mild=False, raw_scan_variation=False, exclude_artifacts=(),
                   detectors=True, spatial_augment=False, registration_jitter=0.0):
    """Train a ``folds``-fold ensemble on ``scans``; write it to ``out_dir``; return its card.

    ``exclude_artifacts``: artifact types whose simulated volumes the network does not train on
    (cached but left out), for types a native-space detector covers (bidsqc.detectors).
    ``detectors``: calibrate those detectors on the training scans into the card.
    ``spatial_augment``: random affine augmentation on the grid (``augment``).
    ``registration_jitter``: the share of the training volumes (all but the subjects' originals)
    moved by a random affine inside their one resampling at registration instead
    (``bidsqc.model.dataset.add_moves``), built into the cache."""
    import keras
    import tensorflow as tf

    from ..preprocessing.templates import get_template
    from .losses import get_loss
    from .network import build_network

    started = time.time()
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    work = out_dir / "checkpoints"
    work.mkdir(parents=True, exist_ok=True)
    artifacts = list(ARTIFACTS)
    template = get_template(template_id, allow_fallback=False)
    if init_from:
        init_card = read_card(init_from)
        grid_shape = tuple(init_card["input"]["shape"])
        grid_affine = np.asarray(init_card["input"]["affine"])
        mask = np.asarray(nib.load(Path(init_from) / init_card["input"]["mask_file"]).dataobj) > 0
        artifacts = list(init_card["artifacts"])
    else:
        grid_affine = make_grid(template, spacing_mm, grid_shape)
        mask = make_input_mask(template, grid_shape, grid_affine)
    unknown = sorted(set(exclude_artifacts) - set(artifacts))
    if unknown:
        raise ValueError(f"--exclude-artifacts: unknown artifact type(s) {', '.join(unknown)}; "
                         f"known: {', '.join(artifacts)}")
    mask_tmp = out_dir / f"tmp_{MASK_NAME}"
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), grid_affine), mask_tmp)
    os.replace(mask_tmp, out_dir / MASK_NAME)

    # with exclude_mild only severe variants are planned, so no mild volume is built or trained on
    rows, errors = build_dataset(scans, cache_dir, template_id, grid_shape, grid_affine, mask,
                                 n_clean_variants=n_clean_variants, seed=seed, nprocs=nprocs,
                                 severities=("severe",) if exclude_mild else ("mild", "severe"),
                                 raw_scan_variation=raw_scan_variation, skip_artifacts=exclude_artifacts,
                                 move_p=registration_jitter)
    if errors:
        LOGGER.warning("dataset: %d volumes failed and are left out", len(errors))
    if exclude_artifacts:
        LOGGER.info("left out: the %s volumes (native-space detectors cover them)", ", ".join(exclude_artifacts))
    manifest_sha = file_checksum(cache_dir / "manifest.tsv")
    volumes = load_volumes(cache_dir, rows)
    y_bad, y_art = _targets(rows, artifacts)
    is_bad = (y_bad > 0).astype(int)
    n_bad, n_clean = int(is_bad.sum()), int((1 - is_bad).sum())
    weights = np.where(is_bad == 1, 1.0, n_bad / max(1, n_clean)).astype(np.float32)
    subjects = [r["subject"] for r in rows]
    backgrounds = background_maps(rows, volumes, mask, distances=raw_scan_variation)
    background_keys = moved_backgrounds(rows, backgrounds, mask, distances=raw_scan_variation)
    LOGGER.info("training set: %d volumes (%d clean, %d bad) from %d subjects; grid %s",
                len(rows), n_clean, n_bad, len(set(subjects)), grid_shape)
    splits = _fold_split(rows, folds, seed)
    rng_fields = np.random.default_rng(seed)
    fields = smooth_fields(grid_shape, 8, rng_fields)
    val_x_all = np.stack([zscore(v.astype(np.float32), mask) for v in volumes])

    oof_bad = np.full(len(rows), np.nan, np.float32)
    oof_art = np.full((len(rows), len(artifacts)), np.nan, np.float32)
    fold_files, fold_metrics, histories = [], [], {}
    for fold, (train_idx, val_idx) in enumerate(splits):
        final = out_dir / f"fold_{fold:02d}.keras"
        ckpt = work / f"fold_{fold:02d}.keras"
        state_path = work / f"fold_{fold:02d}.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else {"epoch": 0, "history": []}
        keras.utils.set_random_seed(seed + fold)
        if final.exists() and state.get("done"):
            LOGGER.info("fold %d/%d: already trained, loading %s", fold + 1, folds, final.name)
            model = keras.models.load_model(final, compile=False, safe_mode=True)
        else:
            if ckpt.exists() and state["epoch"] > 0:
                LOGGER.info("fold %d/%d: resuming after epoch %d", fold + 1, folds, state["epoch"])
                model = keras.models.load_model(ckpt, compile=False, safe_mode=True)
            elif init_from:
                src = Path(init_from) / init_card["folds"][fold % len(init_card["folds"])]
                LOGGER.info("fold %d/%d: fine-tuning from %s", fold + 1, folds, src)
                model = keras.models.load_model(src, compile=False, safe_mode=True)
            else:
                model = build_network(grid_shape, len(artifacts), levels=levels, base_filters=base_filters,
                                      dropout=dropout, dense_dropout=dense_dropout)
            model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                          loss={"p_bad": get_loss(loss), "artifacts": keras.losses.BinaryCrossentropy()},
                          loss_weights={"p_bad": 1.0, "artifacts": 0.5})
            rng = np.random.default_rng(seed * 1000 + fold * 100 + state["epoch"])
            steps = len(train_idx) // batch_size

            def generator(rng=rng, train_idx=train_idx):
                while True:
                    yield from batches(train_idx, volumes, y_bad, y_art, weights, mask, backgrounds,
                                       background_keys, batch_size, mixup_alpha, rng, fields,
                                       layered_scalp=raw_scan_variation, spatial=spatial_augment)

            signature = (tf.TensorSpec((batch_size,) + tuple(grid_shape) + (1,), tf.float32),
                         {"p_bad": tf.TensorSpec((batch_size, 1), tf.float32),
                          "artifacts": tf.TensorSpec((batch_size, len(artifacts)), tf.float32)},
                         tf.TensorSpec((batch_size,), tf.float32))
            dataset = tf.data.Dataset.from_generator(generator, output_signature=signature).prefetch(2)
            val = (val_x_all[val_idx][..., None],
                   {"p_bad": np.minimum(y_bad[val_idx], 1)[:, None], "artifacts": y_art[val_idx]})
            if state["epoch"] < epochs:
                model.fit(dataset, epochs=epochs, initial_epoch=state["epoch"], steps_per_epoch=steps,
                          validation_data=val, validation_batch_size=batch_size, verbose=0,
                          callbacks=[keras.callbacks.LearningRateScheduler(cosine_lr(learning_rate, epochs)),
                                     _Progress(fold, folds, epochs, ckpt, state_path, started)])
            recalibrate_batchnorm(model, volumes[train_idx], mask, batch_size=batch_size, seed=seed + fold)
            save_for_inference(model, final)
            state = json.loads(state_path.read_text()) if state_path.exists() else {"history": []}
            state["done"] = True
            write_json_atomic(state_path, state)
        histories[fold] = state.get("history", [])
        p_bad, p_art = mc_predict(model, val_x_all[val_idx], mc_samples)
        oof_bad[val_idx], oof_art[val_idx] = p_bad, p_art
        metrics = binary_metrics(is_bad[val_idx], p_bad)
        metrics["fold"] = fold
        metrics["subjects"] = sorted({subjects[i] for i in val_idx})
        fold_metrics.append(metrics)
        fold_files.append(final.name)
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
    art_idx = np.array([artifacts.index(r["artifact"]) if r["artifact"] in artifacts else -1 for r in rows])
    if severe.any():
        pooled["artifact_top1_severe"] = round(float((oof_art[severe].argmax(axis=1) == art_idx[severe]).mean()), 4)
    _plot_curves(histories, out_dir / "training_curves.png")
    oof_path = out_dir / "cv_predictions.tsv"
    with open(oof_path.with_suffix(".tmp"), "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["subject", "variant", "artifact", "severity", "label", "p_bad"])
        for r, p in zip(rows, oof_bad):
            writer.writerow([r["subject"], r["variant"], r["artifact"], r["severity"], r["label"], f"{p:.4f}"])
    os.replace(oof_path.with_suffix(".tmp"), oof_path)

    model_id = ensemble_id(out_dir, fold_files)
    card = {
        "model_id": model_id,
        "bidsqc_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "input": {"shape": list(grid_shape), "spacing_mm": float(grid_affine[0, 0]),
                  "affine": np.asarray(grid_affine).round(4).tolist(), "template": template_id,
                  "space": f"{template_id} world coordinates (mm)",
                  "normalisation": "zscore inside the input mask, zero outside",
                  "presmooth_fwhm_mm": PRESMOOTH_FWHM_MM,
                  "mask_file": MASK_NAME, "registration": "affine (SimpleITK, Mattes MI)"},
        "artifacts": artifacts,
        "folds": fold_files,
        "mc_samples": int(mc_samples),
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
        "architecture": {"levels": levels, "base_filters": base_filters, "dropout": dropout,
                         "dense_units": [256, 64], "dense_dropout": dense_dropout,
                         "heads": {"p_bad": "sigmoid", "artifacts": "sigmoid per artifact type"}},
        "training": {"folds": folds, "epochs": epochs, "batch_size": batch_size, "loss": loss,
                     "mixup_alpha": mixup_alpha, "learning_rate": learning_rate, "seed": seed,
                     "lr_schedule": "per-epoch cosine decay to 5% of learning_rate",
                     "batchnorm": "momentum 0.9; moving statistics re-estimated on plain training volumes "
                                  "after each fold's training",
                     "mild_label": None if exclude_mild else MILD_LABEL, "exclude_mild": exclude_mild,
                     "n_clean_variants": n_clean_variants, "raw_scan_variation": bool(raw_scan_variation),
                     "spatial_augment": {"p": SPATIAL_P, **SPATIAL_RANGES, "spline_order": SPATIAL_ORDER}
                     if spatial_augment else None,
                     "registration_jitter": {"p": registration_jitter, **JITTER_RANGES}
                     if registration_jitter else None,
                     "excluded_artifacts": sorted(exclude_artifacts),
                     "n_volumes": len(rows), "n_clean": n_clean, "n_bad": n_bad,
                     "n_subjects": len(set(subjects)), "dataset_manifest_sha256": manifest_sha,
                     "dataset_errors": errors, "init_from": str(init_from) if init_from else None,
                     "holdout": holdout, "seconds": round(time.time() - started, 1)},
        "metrics": {"per_fold": fold_metrics, "pooled": pooled},
        "library_versions": _versions(),
    }
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
