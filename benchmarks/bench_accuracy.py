"""Accuracy of an ensemble on scans it never saw, with freshly simulated artifacts.

Held-out scans come from ``build/split/holdout.tsv`` (``benchmarks/make_split.py``;
the shipped ensemble's model card records the same list). Each clean held-out scan
is rated as is and with every artifact at both severities, drawn with a seed the
training never used, through the same preprocessing as the application. Prints:
AUC clean-vs-severe and clean-vs-mild, the share of clean scans failed, per-artifact
top-1 accuracy on severe scans, seconds per volume for the whole ensemble with the
default MC samples, and, separately, the fail rate on clean raw heads from unseen
scanners (with their severe artifacts), on clean variations of those heads (contrast,
resolution and a weak bias field, as other scanners might give them) and
the ratings of the questionable scans.

    python benchmarks/bench_accuracy.py [--model DIR] [--holdout build/split/holdout.tsv]
        [--update-card]   # also store the figures in the model card's "benchmark" field
"""

import argparse
import csv
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bidsqc.artifacts import ARTIFACTS  # noqa: E402
from bidsqc.model.card import write_json_atomic  # noqa: E402
from bidsqc.model.decision import decide, verdicts  # noqa: E402
from bidsqc.model.ensemble import DEFAULT_MODEL_DIR, Ensemble  # noqa: E402
from bidsqc.preprocessing.resample import zscore  # noqa: E402
from bidsqc.scores import scores as detector_scores_of  # noqa: E402
from bidsqc.training.dataset import build_dataset, detector_table, load_volumes, native_image  # noqa: E402

TARGETS = {"auc_clean_vs_severe": 0.98, "auc_clean_vs_mild": 0.85, "clean_fail_rate": 0.05,
           "artifact_top1_severe": 0.80, "seconds_per_volume": 3.0}


def auc(negatives, positives):
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(negatives)), np.ones(len(positives))]
    return float(roc_auc_score(y, np.r_[negatives, positives])) if len(negatives) and len(positives) else np.nan


def rate(ensemble, rows, cache_dir, detector_scores):
    """p_bad, verdict and likely artifact for every row, with the native-space detectors and
    the card's artifact naming (``detector_scores``: {key: scores}) and from the network
    alone (``*_network``); also the ensemble seconds per volume."""
    volumes = load_volumes(cache_dir, rows)
    results, seconds = [], []
    for row, volume in zip(rows, volumes):
        x = zscore(volume.astype(np.float32), ensemble.mask)
        started = time.perf_counter()
        res = ensemble.predict(x)
        seconds.append(time.perf_counter() - started)
        verdict = verdicts(res, ensemble.threshold, ensemble.uncertain_band)[0]
        p_art = {a: float(v[0]) for a, v in res.p_artifacts.items()}
        top = max(p_art, key=p_art.get)
        out = dict(row, p_bad_network=float(res.p_bad[0]), qc_network=verdict, top_artifact_network=top,
                   p_bad_std=float(res.p_bad_std[0]), detector_scores=detector_scores.get(row["key"]))
        outcome = decide(res, 0, ensemble.threshold, ensemble.uncertain_band, ensemble.detectors,
                         out["detector_scores"])
        top = ensemble.likely_artifact(p_art, out["detector_scores"], outcome["flagged"])
        results.append(dict(out, p_bad=float(res.p_bad[0]), qc=outcome["qc"], top_artifact=top))
    return results, seconds


def network_only(results):
    """The same rows as the network alone rated them."""
    return [dict(r, p_bad=r["p_bad_network"], qc=r["qc_network"], top_artifact=r["top_artifact_network"])
            for r in results]


def summarise(results, seconds):
    clean = [r for r in results if r["artifact"] in ("none",)]
    mild = [r for r in results if r["severity"] == "mild"]
    severe = [r for r in results if r["severity"] == "severe"]
    p = lambda rows: np.array([r["p_bad"] for r in rows])  # noqa: E731

    def top1(rows):
        return round(float(np.mean([r["top_artifact"] == r["artifact"] for r in rows])), 4) if rows else None

    by_artifact = {a: [r for r in severe if r["artifact"] == a] for a in ARTIFACTS}
    by_artifact = {a: rows for a, rows in by_artifact.items() if rows}
    out = {
        "n_clean": len(clean), "n_mild": len(mild), "n_severe": len(severe),
        "auc_clean_vs_severe": round(auc(p(clean), p(severe)), 4),
        "auc_clean_vs_mild": round(auc(p(clean), p(mild)), 4),
        "clean_fail_rate": round(float(np.mean([r["qc"] == "fail" for r in clean])), 4) if clean else None,
        "clean_uncertain_rate": round(float(np.mean([r["qc"] == "uncertain" for r in clean])), 4) if clean else None,
        "severe_detected_rate": round(float(np.mean([r["qc"] == "fail" for r in severe])), 4) if severe else None,
        "mild_flagged_rate": round(float(np.mean([r["qc"] != "pass" for r in mild])), 4) if mild else None,
        "artifact_top1_severe": top1(severe),
        "per_artifact_top1_severe": {a: round(float(np.mean([r["top_artifact"] == a for r in rows])), 3)
                                     for a, rows in by_artifact.items()},
        # the borderline scans a user is sent to look at: is the named reason right?
        "artifact_top1_mild": top1(mild),
        "artifact_top1_mild_flagged": top1([r for r in mild if r["qc"] != "pass"]),
        "per_artifact_auc_severe": {a: round(auc(p(clean), p(rows)), 3) for a, rows in by_artifact.items()},
        "per_artifact_severe_detected": {a: round(float(np.mean([r["qc"] == "fail" for r in rows])), 3)
                                         for a, rows in by_artifact.items()},
    }
    if seconds:
        out["seconds_per_volume"] = round(float(np.median(seconds)), 3)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--holdout", type=Path, default=REPO / "build" / "split" / "holdout.tsv")
    parser.add_argument("--cache", type=Path, default=REPO / "build" / "bench_cache")
    parser.add_argument("--seed", type=int, default=2024, help="artifact seed (training used 0)")
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--raw-variants", type=int, default=5,
                        help="clean variations (contrast, resolution, a weak bias field) of each raw head, rated "
                             "as further clean raw heads (0: none); no raw-scan noise, which raw heads carry")
    parser.add_argument("--update-card", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    ensemble = Ensemble.load(args.model)
    card = ensemble.card
    with open(args.holdout, newline="") as handle:
        holdout = list(csv.DictReader(handle, delimiter="\t"))
    # a benchmark of subjects the ensemble trained on would measure memory, not quality
    trained_subjects = {s for fold in card.get("metrics", {}).get("per_fold", []) for s in fold.get("subjects", [])}
    leaked = sorted({h["subject"] for h in holdout} & trained_subjects)
    if leaked:
        sys.exit(f"{args.holdout}: {len(leaked)} subject(s) the ensemble was trained on ({', '.join(leaked[:5])}); "
                 "benchmark held-out subjects only (benchmarks/make_split.py)")
    recorded = {h["source_file"] for h in (card["training"].get("holdout") or [])}
    listed = {h["source_file"] for h in holdout}
    if recorded and recorded != listed:
        print(f"note: the holdout list has {len(listed - recorded)} scan(s) the model card's record of its held-out "
              f"scans lacks (e.g. --extra-raw-head) and lacks {len(recorded - listed)} it has", file=sys.stderr)
    groups = {}
    for row in holdout:
        groups.setdefault(row["group"], []).append(
            {"source_file": row["source_file"], "subject": row["subject"], "label": "good"})
    template_id = card["input"]["template"]
    grid_shape, grid_affine = ensemble.grid_shape, ensemble.grid_affine

    report = {"model_id": ensemble.model_id, "threshold": ensemble.threshold,
              "uncertain_band": list(ensemble.uncertain_band), "mc_samples": card.get("mc_samples"),
              "n_folds": len(ensemble.models), "artifact_seed": args.seed}
    details = []
    for group, with_artifacts in (("heldout", True), ("raw_head", True), ("raw_stripped", False),
                                  ("questionable", False)):
        scans = groups.get(group, [])
        if not scans:
            continue
        rows, errors = build_dataset(scans, args.cache, template_id, grid_shape, grid_affine, ensemble.mask,
                                     n_clean_variants=0, seed=args.seed, nprocs=args.nprocs, every_severity=True,
                                     artifacts=ARTIFACTS if with_artifacts else ())
        scored = detector_table(rows, args.cache, nprocs=args.nprocs, template_id=template_id) \
            if ensemble.detectors else {}
        results, seconds = rate(ensemble, rows, args.cache, scored)
        for r in results:
            r["group"] = group
        details += results
        report[group] = summarise(results, seconds)
        if ensemble.detectors:
            report[group]["network_only"] = summarise(network_only(results), [])
        report[group]["n_scans"] = len(scans)
        report[group]["errors"] = errors
        clean = [r for r in results if r["artifact"] == "none"]
        report[group]["clean_scans"] = {Path(r["source_file"]).name: {"p_bad": round(r["p_bad"], 3),
                                                                      "qc": r["qc"]} for r in clean}

    if args.raw_variants and groups.get("raw_head"):
        # the raw heads as other scanners might give them: more clean heads with skull than the few at hand
        rows, errors = build_dataset(groups["raw_head"], args.cache, template_id, grid_shape, grid_affine,
                                     ensemble.mask, n_clean_variants=args.raw_variants, seed=args.seed,
                                     nprocs=args.nprocs, artifacts=())
        rows = [r for r in rows if r["artifact"] == "clean"]
        scored = detector_table(rows, args.cache, nprocs=args.nprocs, template_id=template_id) \
            if ensemble.detectors else {}
        results, _ = rate(ensemble, rows, args.cache, scored)
        for r in results:
            r["group"] = "raw_head_varied"
        details += results
        verdicts = [r["qc"] for r in results]
        report["raw_head_varied"] = {
            "n_clean": len(results), "variants_per_head": args.raw_variants, "errors": errors,
            "clean_fail_rate": round(verdicts.count("fail") / len(verdicts), 4) if verdicts else None,
            "clean_uncertain_rate": round(verdicts.count("uncertain") / len(verdicts), 4) if verdicts else None,
            "clean_scans": {f"{Path(r['source_file']).name} {r['variant']}": {"p_bad": round(r["p_bad"], 3),
                                                                               "qc": r["qc"]} for r in results}}

    if ensemble.detectors and groups.get("heldout"):
        # the detectors' own time, on the held-out scans as they are (native grid)
        timings = []
        for scan in groups["heldout"]:
            img, _ = native_image(dict(scan, artifact="none", seed=None))
            started = time.perf_counter()
            detector_scores_of(np.asarray(img.dataobj, np.float32), img.header.get_zooms()[:3])
            timings.append(time.perf_counter() - started)
        report["heldout"]["detector_seconds_per_scan"] = round(float(np.median(timings)), 3)

    h = report.get("heldout", {})
    print(f"\nbidsqc accuracy benchmark: model {ensemble.model_id} ({len(ensemble.models)} folds x "
          f"{card.get('mc_samples')} MC samples, threshold {ensemble.threshold:.2f})")
    print(f"held-out subjects: {h.get('n_scans')} clean scans, {h.get('n_mild')} mild, {h.get('n_severe')} severe")
    lines = [("AUC clean vs severe", h.get("auc_clean_vs_severe"), ">=", TARGETS["auc_clean_vs_severe"]),
             ("AUC clean vs mild", h.get("auc_clean_vs_mild"), ">=", TARGETS["auc_clean_vs_mild"]),
             ("clean scans failed", h.get("clean_fail_rate"), "<=", TARGETS["clean_fail_rate"]),
             ("artifact top-1 on severe", h.get("artifact_top1_severe"), ">=", TARGETS["artifact_top1_severe"]),
             ("seconds per volume (ensemble)", h.get("seconds_per_volume"), "<=", TARGETS["seconds_per_volume"])]
    for name, value, op, target in lines:
        met = value is not None and (value >= target if op == ">=" else value <= target)
        print(f"  {name:<32}{value!s:>8}   target {op} {target}   {'met' if met else 'MISSED'}")
    print(f"  clean scans uncertain             {h.get('clean_uncertain_rate')}")
    print(f"  severe scans failed               {h.get('severe_detected_rate')}")
    print(f"  per-artifact top-1 (severe)       {h.get('per_artifact_top1_severe')}")
    print(f"  artifact top-1 on mild            {h.get('artifact_top1_mild')} (on the mild scans not passed: "
          f"{h.get('artifact_top1_mild_flagged')})")
    print(f"  per-artifact failed (severe)      {h.get('per_artifact_severe_detected')}")
    print(f"  per-artifact AUC clean vs severe  {h.get('per_artifact_auc_severe')}")
    if "network_only" in h:
        n = h["network_only"]
        print(f"  detectors: {h.get('detector_seconds_per_scan')} s per scan (native grid, not in the figure above)")
        print(f"  network alone: AUC severe {n['auc_clean_vs_severe']}, mild {n['auc_clean_vs_mild']}, clean "
              f"failed {n['clean_fail_rate']} (uncertain {n['clean_uncertain_rate']}), top-1 "
              f"{n['artifact_top1_severe']}, severe failed {n['severe_detected_rate']}")
        print(f"  network alone, per-artifact AUC   {n['per_artifact_auc_severe']}")
    for group in ("raw_head", "raw_head_varied", "raw_stripped", "questionable"):
        g = report.get(group)
        if not g:
            continue
        print(f"{group}: clean fail rate {g.get('clean_fail_rate')} (uncertain {g.get('clean_uncertain_rate')})"
              + (f", severe failed {g.get('severe_detected_rate')}, AUC clean vs severe "
                 f"{g.get('auc_clean_vs_severe')}" if g.get("n_severe") else ""))
        for name, value in g["clean_scans"].items():
            print(f"    {name:<55} p_bad {value['p_bad']:.3f}  {value['qc']}")
    out = REPO / "build" / "bench_accuracy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, {"report": report, "details": details})
    print(f"\nfull report: {out}")
    if args.update_card:
        card["benchmark"] = {k: v for k, v in report.items()}
        card["benchmark"]["targets"] = TARGETS
        write_json_atomic(Path(args.model) / "model_card.json", card)
        print(f"figures stored in {Path(args.model) / 'model_card.json'}")


if __name__ == "__main__":
    main()
