"""Does an ensemble read resampling blur as an artifact?

Every clean held-out scan and clean raw head (``build/split/holdout.tsv``; not the scans marked
questionable) is taken from the accuracy benchmark's cache (``build/bench_cache``, written by
``benchmarks/bench_accuracy.py``) and rated as it is and after a half-voxel shift along all
three axes, once by linear and once by cubic B-spline interpolation: the resampling a
spatial augmentation on the model grid does. A linear shift blurs (it averages neighbouring
voxels), a cubic one barely does. Prints the median network p_bad of the clean volumes per
case and the Laplacian (fine-texture) energy each resampling keeps.

It also prints how much fine texture noise adds, against how much the training augmentation's
resampling (``--spatial-augment``: ``random_affine`` drawn with seed 0, cubic
``spatial_transform``) takes away, on the same volumes and their simulated mild and severe
noise variants from the same cache: where a resampled mild-noise volume keeps less texture
than a clean volume as it is, a network trained on resampled volumes will read clean scans,
which are resampled once, as noisy.

    python benchmarks/bench_smoothing.py [--model DIR ...] [--cache build/bench_cache]
        [--holdout build/split/holdout.tsv]
"""

import argparse
import csv
import logging
import os
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bidsqc.model.ensemble import DEFAULT_MODEL_DIR, Ensemble  # noqa: E402
from bidsqc.preprocessing.resample import zscore  # noqa: E402
from bidsqc.training.geometry import random_affine, spatial_transform  # noqa: E402
from make_split import CLEAN_GROUPS  # noqa: E402  (benchmarks/, this script's folder)

CASES = (("as is", None), ("half-voxel shift, linear", 1), ("half-voxel shift, cubic", 3))


def resample(volume, order):
    if order is None:
        return volume
    return ndimage.shift(volume, (0.5, 0.5, 0.5), order=order, mode="constant")


def texture_energy(volume, mask):
    return float(np.sqrt(np.mean(ndimage.laplace(volume.astype(np.float64))[mask] ** 2)))


def augmentation_texture(rows, volumes, all_rows, cache, mask):
    """Median texture energy, relative to each clean volume (``volumes``, of ``rows``) as it is,
    of: the clean volume after one augmentation draw, its mild and severe noise variants as they
    are and after a draw."""
    rng = np.random.default_rng(0)
    noisy = {(r["source_file"], r["severity"]): r for r in all_rows if r["artifact"] == "noise"}
    ratios = {}
    for row, clean in zip(rows, volumes):
        base = texture_energy(clean, mask)
        cases = {"clean, augmented": clean}
        for severity in ("mild", "severe"):
            if (row["source_file"], severity) in noisy:
                volume = np.load(cache / noisy[row["source_file"], severity]["volume"]).astype(np.float32)
                cases[f"{severity} noise"] = volume
                cases[f"{severity} noise, augmented"] = volume
        for name, volume in cases.items():
            if name.endswith("augmented"):
                volume = np.clip(spatial_transform(volume, *random_affine(rng)), 0, None)
            ratios.setdefault(name, []).append(texture_energy(volume, mask) / base)
    return {name: (float(np.median(r)), len(r)) for name, r in ratios.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, nargs="+", default=[DEFAULT_MODEL_DIR])
    parser.add_argument("--cache", type=Path, default=REPO / "build" / "bench_cache")
    parser.add_argument("--holdout", type=Path, default=REPO / "build" / "split" / "holdout.tsv")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    manifest = args.cache / "manifest.tsv"
    if not manifest.is_file():
        sys.exit(f"error: {manifest} not found; run benchmarks/bench_accuracy.py first (it builds that cache)")
    with open(args.holdout, newline="") as handle:
        clean = {h["source_file"] for h in csv.DictReader(handle, delimiter="\t") if h["group"] in CLEAN_GROUPS}
    with open(manifest, newline="") as handle:
        all_rows = list(csv.DictReader(handle, delimiter="\t"))
    rows = [r for r in all_rows if r["artifact"] == "none" and r["source_file"] in clean]
    volumes = [np.load(args.cache / r["volume"]).astype(np.float32) for r in rows]
    print(f"{len(volumes)} clean volumes from {args.cache}")
    ensembles = [Ensemble.load(model) for model in args.model]
    inner = ndimage.binary_erosion(ensembles[0].mask, iterations=3)
    print("texture energy relative to the clean volume as it is (median):")
    for name, (ratio, n) in augmentation_texture(rows, volumes, all_rows, args.cache, inner).items():
        print(f"  {name:26s} {ratio:.2f}  ({n} volumes)")
    resampled = {order: [resample(v, order) for v in volumes] for _, order in CASES}  # the same for every model
    for model, ensemble in zip(args.model, ensembles):
        inner = ndimage.binary_erosion(ensemble.mask, iterations=3)
        print(f"\n{ensemble.model_id} ({model}), threshold {ensemble.threshold:.2f}")
        for name, order in CASES:
            moved = resampled[order]
            kept = np.median([texture_energy(m, inner) / texture_energy(v, inner) for m, v in zip(moved, volumes)])
            p = ensemble.predict(np.stack([zscore(m, ensemble.mask) for m in moved])).p_bad
            print(f"  {name:26s} median p_bad {np.median(p):.3f}"
                  f"  at or above threshold {np.mean(p >= ensemble.threshold):.2f}  texture energy kept {kept:.2f}")


if __name__ == "__main__":
    main()
