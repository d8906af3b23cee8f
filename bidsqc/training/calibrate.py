"""What the model card learns besides the networks, on the training scans only: each native
detector's calibration (clean training volumes against severe simulated artifacts) and the
artifact naming (a logistic regression on out-of-fold network probabilities and native
scores). How and why: docs/scores.md.
"""

import json
import logging
from pathlib import Path

import numpy as np

from ..artifacts import ARTIFACTS
from ..artifacts.shift import SHIFT_RANGES
from ..model.card import CARD_NAME, ModelCardError, read_card, write_json_atomic
from ..model.ensemble import Ensemble
from ..model.naming import NAMING_C, feature_names, feature_vector, native_columns
from ..preprocessing.resample import zscore
from ..scores import DETECTORS, FEATURES
from .dataset import assign_keys, build_dataset, detector_table, load_volumes, naming_jobs, plan_variants
from .geometry import JITTER_RANGES

LOGGER = logging.getLogger("bidsqc")

#: the quantiles of the training scores that bound the detector's uncertain zone
CLEAN_QUANTILE = 0.99
BAD_QUANTILE = 0.05


def calibrate(clean_scores, bad_scores):
    """A detector's decision from training scores: ``low`` = the 99th percentile of clean
    volumes, ``high`` = the 5th percentile of volumes with the artifact (severe),
    ``threshold`` their geometric mean; where they overlap, the threshold with the best
    balanced accuracy and the overlap as the uncertain zone. Also the training sensitivity
    and specificity at the threshold."""
    clean = np.asarray(clean_scores, np.float64)
    bad = np.asarray(bad_scores, np.float64)
    if clean.size == 0 or bad.size == 0:
        raise ValueError("detector calibration needs clean and artifact scores")
    floor = 1e-4
    low = max(float(np.quantile(clean, CLEAN_QUANTILE)), floor)
    high = max(float(np.quantile(bad, BAD_QUANTILE)), floor)
    if high > low:
        threshold = float(np.sqrt(low * high))
    else:
        candidates = np.unique(np.concatenate([clean, bad]))
        balanced = [((bad >= t).mean() + (clean < t).mean()) / 2 for t in candidates]
        threshold = max(float(candidates[int(np.argmax(balanced))]), floor)
        low, high = min(low, high), max(low, high)
        low, high = min(low, threshold * 0.999), max(high, threshold * 1.001)
    return {"threshold": round(threshold, 5), "low": round(low, 5), "high": round(high, 5),
            "sensitivity": round(float((bad >= threshold).mean()), 4),
            "specificity": round(float((clean < threshold).mean()), 4),
            "n_clean": int(clean.size), "n_artifact": int(bad.size)}


def fit_naming_model(p_artifacts, native_scores, labels, groups, artifacts, severities=None, features=FEATURES):
    """Fit the naming model on artifact volumes. ``p_artifacts``: (n, len(artifacts))
    out-of-fold network probabilities; ``native_scores``: n dicts of FEATURES; ``labels``:
    the artifact of each; ``groups``: subjects, for a grouped cross-validated top-1 that the
    card reports next to the network heads' own; ``severities`` (optional, n): the
    cross-validated top-1 is also reported per severity; ``features``: the native scores
    used. Returns the model card's ``naming`` entry."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    p_artifacts = np.asarray(p_artifacts, np.float64)
    x = np.stack([feature_vector(dict(zip(artifacts, p)), s, artifacts, native_columns(features))
                  for p, s in zip(p_artifacts, native_scores)])
    y = np.asarray(labels)
    groups = np.asarray(groups)
    classes = [a for a in artifacts if a in set(labels)]
    if len(classes) < 2:
        raise ValueError("artifact naming needs volumes of at least two artifact types")

    def train(rows):
        mean, scale = x[rows].mean(axis=0), x[rows].std(axis=0)
        scale = np.where(scale > 1e-9, scale, 1.0)
        model = LogisticRegression(C=NAMING_C, max_iter=5000)
        model.fit((x[rows] - mean) / scale, y[rows])
        return model, mean, scale

    n_splits = min(5, len(set(groups)))
    cv_hits, cv_rows = [], []
    if n_splits >= 2:
        for fit_rows, test_rows in GroupKFold(n_splits=n_splits).split(x, y, groups):
            if len(set(y[fit_rows])) < 2:
                continue
            model, mean, scale = train(fit_rows)
            cv_hits += list(model.predict((x[test_rows] - mean) / scale) == y[test_rows])
            cv_rows += list(test_rows)
    by_severity = {}
    if severities is not None:
        for severity in sorted({str(severities[r]) for r in cv_rows}):
            hits = [h for h, r in zip(cv_hits, cv_rows) if str(severities[r]) == severity]
            by_severity[severity] = round(float(np.mean(hits)), 4)
    network_hits = [artifacts[int(np.argmax(p))] == label for p, label in zip(p_artifacts, y)]
    model, mean, scale = train(np.arange(len(y)))
    return {"method": "multinomial logistic regression (C=%g) on standardised features, fit on out-of-fold "
                      "network probabilities of the training volumes with artifacts" % NAMING_C,
            "features": feature_names(artifacts, features), "artifacts": [str(c) for c in model.classes_],
            "mean": np.round(mean, 6).tolist(), "scale": np.round(scale, 6).tolist(),
            "coef": np.round(model.coef_, 6).tolist(), "intercept": np.round(model.intercept_, 6).tolist(),
            "n_volumes": int(len(y)), "n_subjects": int(len(set(groups))),
            "cv_top1": round(float(np.mean(cv_hits)), 4) if cv_hits else None,
            **({"cv_top1_by_severity": by_severity} if by_severity else {}),
            "network_top1": round(float(np.mean(network_hits)), 4)}


def native_plan(scans, seed=0, n_clean_variants=2, shift_p=0.0):
    """The volumes the native-space scores are calibrated on: each good scan as is,
    ``n_clean_variants`` clean variations with raw-scan noise and sharpening, one resliced
    with a coarser axis (a clean anisotropic acquisition), and the severe version of every
    artifact, drawn with the training plan's seeds (so with ``--exclude-mild`` they are the
    training volumes themselves). The mild version of every artifact and missing coverage
    cut off the array (``naming_jobs``) are scored too, for the artifact naming only. With
    ``shift_p`` (the training's ``--shift-variation``) the same share of the clean variations
    and artifact volumes as in training look like another study's (``add_shifts``), so each
    detector's clean range spans them."""
    jobs = plan_variants(scans, n_clean_variants=n_clean_variants, severities=("severe",), seed=seed,
                         artifacts=ARTIFACTS, raw_scan_variation=True, shift_p=shift_p)
    rng = np.random.default_rng([seed, 1])  # its own stream: the other jobs keep the training plan's seeds
    for job in [j for j in jobs if j["variant"] == "original"]:
        jobs.append(dict(job, variant="anisotropic0", artifact="anisotropic", seed=int(rng.integers(2 ** 31))))
    return assign_keys(jobs + naming_jobs(scans, seed=seed), "native")


def calibrate_detectors(jobs, table, n_clean_variants=2, shift_p=0.0):
    """Calibrate the native-space detectors (bidsqc.scores.DETECTORS) on the scores
    ``table`` of the ``native_plan`` ``jobs``: clean volumes against the severe volumes of
    each detector's artifact. Returns the model card's ``detectors`` entry."""
    clean = [table[j["key"]] for j in jobs if j["label"] == 0.0 and j["key"] in table]
    entry = {"space": "the conformed (RAS) image on its own voxel grid, before registration; the slice score "
                      "leaves out a cut into zero-filled end planes outside the registered template brain",
             "clean": f"each good training scan, {n_clean_variants} clean variations with raw-scan noise and "
                      "one resliced with a 1.1-1.6 times coarser axis"
                      + (f"; a share of {shift_p:g} of the variations also shifted to look like another study's "
                         "scan (as in training)" if shift_p else ""),
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
    """Fit the artifact naming (bidsqc.model.naming, by ``fit_naming_model``) on the artifact
    volumes of the ``native_plan``, severe, mild and cropped: their native scores from
    ``table`` and the out-of-fold probabilities of the ensemble in ``model_dir`` on their
    preprocessed volumes (built into ``cache_dir`` where the training did not already).
    Returns the model card's ``naming`` entry."""
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
                            move_p=jitter.get("p", 0.0), naming=True, shift_p=training_shift_p(training))
    native = {(j["subject"], j["variant"]): j["key"] for j in jobs if j["artifact"] in ARTIFACTS}
    rows = [r for r in rows if r["artifact"] in ARTIFACTS and native.get((r["subject"], r["variant"])) in table]
    volumes = load_volumes(cache_dir, rows)
    p_art = out_of_fold_artifacts(ensemble, rows, volumes)
    keep = [i for i in range(len(rows)) if np.isfinite(p_art[i]).all()]
    if not keep:
        raise ValueError("no training volume has an out-of-fold prediction to fit the artifact naming on")
    entry = fit_naming_model(p_art[keep], [table[native[(rows[i]["subject"], rows[i]["variant"])]] for i in keep],
                             [rows[i]["artifact"] for i in keep], [rows[i]["subject"] for i in keep],
                             ensemble.artifacts, severities=[rows[i]["severity"] for i in keep])
    LOGGER.info("artifact naming: top-1 %s (grouped CV on %d training volumes; %s by severity) against the network "
                "heads' %.3f", entry["cv_top1"], entry["n_volumes"], entry.get("cv_top1_by_severity"),
                entry["network_top1"])
    return entry


def training_shift_p(training):
    """The ``--shift-variation`` share a card's ``training`` entry records (0 without one); a
    card whose shift ranges differ from this bidsqc's cannot have its plan rebuilt."""
    shift = training.get("shift_variation") or {}
    if shift and json.loads(json.dumps(shift.get("ranges"))) != json.loads(json.dumps(SHIFT_RANGES)):
        raise ModelCardError(f"trained with --shift-variation drawn from {shift.get('ranges')}, but this bidsqc "
                             f"draws from {SHIFT_RANGES}; calibrate with the bidsqc version that trained it")
    return float(shift.get("p", 0.0))


def add_detectors(model_dir, scans, cache_dir, seed=0, n_clean_variants=2, nprocs=2):
    """Score the ``native_plan`` of ``scans`` (cached in ``cache_dir``/detectors.tsv),
    calibrate the detectors and fit the artifact naming, and store both in the model card
    of ``model_dir``."""
    card = read_card(model_dir)
    shift_p = training_shift_p(card.get("training", {}))
    jobs = native_plan(scans, seed=seed, n_clean_variants=n_clean_variants, shift_p=shift_p)
    table = detector_table(jobs, cache_dir, nprocs=nprocs, template_id=card["input"]["template"])
    card["detectors"] = calibrate_detectors(jobs, table, n_clean_variants=n_clean_variants, shift_p=shift_p)
    write_json_atomic(Path(model_dir) / CARD_NAME, card)
    card["naming"] = fit_naming(model_dir, scans, cache_dir, jobs, table, seed=seed,
                                n_clean_variants=n_clean_variants, nprocs=nprocs)
    write_json_atomic(Path(model_dir) / CARD_NAME, card)
    return card
