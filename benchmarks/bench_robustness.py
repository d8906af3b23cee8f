"""How an ensemble rates clean scans it never saw when their registration is slightly off.

An affine registration leaves some misalignment, more on unusual heads (atrophy, tilt, an
infant brain). Each clean held-out scan and raw head (``build/split/holdout.tsv``) is
registered as the application does, then rated again with the template-to-scan transform
moved by fixed amounts around the template brain's centre: shifts of 5 mm along each axis,
rotations of 6 degrees about each axis and scalings by 0.93 and 1.07. The volumes are
resampled from the native scan, as a misregistration would be. Prints the share of clean
volumes failed and uncertain, per perturbation and per scan, from the network (the
native-space detectors do not depend on the registration).

    python benchmarks/bench_robustness.py [--model DIR ...] [--holdout build/split/holdout.tsv]
"""

import argparse
import csv
import logging
import os
import sys
from pathlib import Path

import numpy as np
import nibabel as nib

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bidsqc.model.card import write_json_atomic  # noqa: E402
from bidsqc.model.decision import verdicts as verdicts_of  # noqa: E402
from bidsqc.model.ensemble import DEFAULT_MODEL_DIR, Ensemble  # noqa: E402
from bidsqc.preprocessing.conform import conform  # noqa: E402
from bidsqc.preprocessing.pipeline import to_model_grid  # noqa: E402
from bidsqc.preprocessing.register import register_affine  # noqa: E402
from bidsqc.preprocessing.resample import zscore  # noqa: E402
from bidsqc.preprocessing.templates import get_template  # noqa: E402
from bidsqc.training.geometry import axis_rotation  # noqa: E402
from make_split import CLEAN_GROUPS  # noqa: E402  (benchmarks/, this script's folder)

SHIFT_MM, ROTATION_DEG, SCALES = 5.0, 6.0, (0.93, 1.07)


def perturbations():
    """[(name, 4x4 in template mm)]: the fixed moves, each about the origin (applied
    around the brain centre by ``about``)."""
    moves = [("none", np.eye(4))]
    for axis, name in enumerate("xyz"):
        for sign in (-1, 1):
            m = np.eye(4)
            m[axis, 3] = sign * SHIFT_MM
            moves.append((f"shift_{name}{sign * SHIFT_MM:+.0f}mm", m))
    for axis, name in enumerate("xyz"):
        for sign in (-1, 1):
            m = np.eye(4)
            m[:3, :3] = axis_rotation(axis, np.radians(sign * ROTATION_DEG))
            moves.append((f"rotate_{name}{sign * ROTATION_DEG:+.0f}deg", m))
    for s in SCALES:
        moves.append((f"scale_{s:.2f}", np.diag([s, s, s, 1.0])))
    return moves


def about(move, centre_mm):
    """``move`` (4x4) applied about ``centre_mm`` instead of the origin."""
    to_c, from_c = np.eye(4), np.eye(4)
    to_c[:3, 3], from_c[:3, 3] = -centre_mm, centre_mm
    return from_c @ move @ to_c


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, nargs="+", default=[DEFAULT_MODEL_DIR])
    parser.add_argument("--holdout", type=Path, default=REPO / "build" / "split" / "holdout.tsv")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench_robustness.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    ensembles = [Ensemble.load(m) for m in args.model]
    first = ensembles[0]
    for e in ensembles[1:]:
        if e.grid_shape != first.grid_shape or not np.allclose(e.grid_affine, first.grid_affine) \
                or e.card["input"]["template"] != first.card["input"]["template"] \
                or not np.array_equal(e.mask, first.mask):
            sys.exit("bench_robustness: the ensembles compared must share grid, template and input mask")
    template = get_template(first.card["input"]["template"], allow_fallback=False)
    brain = np.asarray(template.mask.dataobj) > 0.5
    centre_mm = (template.mask.affine @ np.r_[np.argwhere(brain).mean(axis=0), 1.0])[:3]
    with open(args.holdout, newline="") as handle:
        scans = [r for r in csv.DictReader(handle, delimiter="\t") if r["group"] in CLEAN_GROUPS]
    moves = perturbations()

    # one registration per scan; every move resamples from the native scan
    volumes, names, groups = [], [], []
    for scan in scans:
        try:
            ras, _ = conform(nib.load(scan["source_file"]), name=scan["source_file"])
            matrix, _ = register_affine(ras, template)
        except Exception as exc:  # a scan the app would rate `error`: left out, said
            print(f"skipped {scan['source_file']}: {exc}", file=sys.stderr)
            continue
        for _, move in moves:
            vol, _ = to_model_grid(ras, matrix @ about(move, centre_mm), template, first.grid_shape,
                                   first.grid_affine, first.mask)
            volumes.append(vol)
        names.append(Path(scan["source_file"]).name)
        groups.append(scan["group"])
    if not names:
        sys.exit(f"bench_robustness: no clean scan in {args.holdout} could be rated (groups {', '.join(CLEAN_GROUPS)})")
    volumes = np.stack(volumes).reshape(len(names), len(moves), *first.grid_shape)

    report = {"shift_mm": SHIFT_MM, "rotation_deg": ROTATION_DEG, "scales": list(SCALES),
              "moves": [m for m, _ in moves], "models": {}}
    for ensemble, model_dir in zip(ensembles, args.model):
        p = np.zeros((len(names), len(moves)))
        verdicts = np.empty((len(names), len(moves)), object)
        for i in range(len(names)):
            x = np.stack([zscore(v.astype(np.float32), ensemble.mask) for v in volumes[i]])
            res = ensemble.predict(x)
            p[i] = res.p_bad
            verdicts[i] = verdicts_of(res, ensemble.threshold, ensemble.uncertain_band)
        entry = {"model_id": ensemble.model_id, "threshold": ensemble.threshold, "groups": {}}
        print(f"\nmodel {ensemble.model_id} ({model_dir}), threshold {ensemble.threshold:.2f}")
        for group in CLEAN_GROUPS:
            rows = [i for i, g in enumerate(groups) if g == group]
            if not rows:
                continue
            moved = verdicts[rows][:, 1:]
            g = {"n_scans": len(rows),
                 "unmoved_failed": float(np.mean(verdicts[rows][:, 0] == "fail")),
                 "moved_failed": round(float(np.mean(moved == "fail")), 4),
                 "moved_uncertain": round(float(np.mean(moved == "uncertain")), 4),
                 "per_move_failed": {m: round(float(np.mean(verdicts[rows][:, j] == "fail")), 3)
                                     for j, (m, _) in enumerate(moves)},
                 "per_scan_p_bad": {names[i]: [round(float(v), 3) for v in p[i]] for i in rows}}
            entry["groups"][group] = g
            print(f"  {group}: {len(rows)} clean scans x {len(moves) - 1} moves: failed {g['moved_failed']:.3f}, "
                  f"uncertain {g['moved_uncertain']:.3f} (unmoved failed {g['unmoved_failed']:.3f})")
            print("    failed per move: " + ", ".join(f"{m} {v:.2f}" for m, v in g["per_move_failed"].items()))
            for i in rows:
                print(f"    {names[i]:<55} p_bad unmoved {p[i, 0]:.3f}, moved median {np.median(p[i, 1:]):.3f}, "
                      f"max {p[i, 1:].max():.3f}")
        report["models"][str(model_dir)] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, report)
    print(f"\nfull report: {args.out}")


if __name__ == "__main__":
    main()
