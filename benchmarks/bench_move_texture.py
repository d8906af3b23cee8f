"""How much does a move at registration change a volume's fine texture?

``bidsqc-train --registration-jitter`` moves training volumes inside their one resampling at
registration (``bidsqc.training.geometry.grid_move``). Rotations and shifts keep the texture, but
a zoom does not: a scan shrunk on the grid packs more fine detail into each voxel, an enlarged
one less. Where the zooms drawn change the texture as much as mild noise adds (1.09 times the
Laplacian energy, benchmarks/bench_smoothing.py), moved clean training volumes overlap mild
noise and the networks learn to ignore it.

Registers ``--n`` scans drawn (seed 1) from the training split (``build/split/train.tsv``;
never the held-out subjects), moves each by a rotation and shift and by zooms from
--spatial-augment's and --registration-jitter's ranges (their extremes), and prints the
Laplacian energy inside the brain relative to the unmoved volume, per scan and the median.

    python benchmarks/bench_move_texture.py [--split build/split/train.tsv] [--n 8]
"""

import argparse
import csv
import logging
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bidsqc.preprocessing.conform import conform, load_image  # noqa: E402
from bidsqc.preprocessing.pipeline import DEFAULT_SHAPE, make_grid, to_model_grid  # noqa: E402
from bidsqc.preprocessing.register import register_affine  # noqa: E402
from bidsqc.preprocessing.templates import get_template  # noqa: E402
from bidsqc.training.geometry import (JITTER_RANGES, SPATIAL_RANGES, axis_rotation, grid_move,  # noqa: E402
                                      zoom_range)
from bench_smoothing import texture_energy  # noqa: E402  (benchmarks/, this script's folder)


def moves():
    """(name, 3x3 matrix, shift in voxels) of the moves compared."""
    turn = axis_rotation(2, np.radians(6.0)) @ axis_rotation(0, np.radians(-5.0))
    out = [("rotation + shift", turn, (0.7, -1.3, 0.4))]
    for label, ranges in (("spatial-augment", SPATIAL_RANGES), ("registration-jitter", JITTER_RANGES)):
        for zoom in zoom_range(ranges):
            out.append((f"{label} zoom {zoom:.3f}", np.eye(3) * zoom, (0, 0, 0)))
    return out


def brain_texture(volume):
    """Laplacian energy of ``volume``, scaled to its brain mean, inside its eroded brain."""
    region = ndimage.binary_erosion(volume > 0.1 * volume.max(), iterations=3)
    return texture_energy(volume / volume[region].mean(), region)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, default=REPO / "build" / "split" / "train.tsv")
    parser.add_argument("--n", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not args.split.exists():
        sys.exit(f"bench_move_texture: {args.split} not found: run benchmarks/make_split.py first")
    rows = list(csv.DictReader(open(args.split), delimiter="\t"))
    picks = [rows[i] for i in np.random.default_rng(1).choice(len(rows), min(args.n, len(rows)), replace=False)]
    template = get_template("MNI152NLin6Asym")
    grid = make_grid(template)
    everywhere = np.ones(DEFAULT_SHAPE, bool)
    compared = moves()
    ratios = []
    for row in picks:
        ras, _ = conform(load_image(row["source_file"]))
        template_to_t1w, _ = register_affine(ras, template)
        def energy(move):
            volume = to_model_grid(ras, template_to_t1w @ move, template, DEFAULT_SHAPE, grid, everywhere)[0]
            return brain_texture(volume)
        unmoved = energy(np.eye(4))
        ratios.append([energy(grid_move(m, s, DEFAULT_SHAPE, grid)) / unmoved for _, m, s in compared])
        print(f"  {Path(row['source_file']).parent.name}/{Path(row['source_file']).name}: "
              + ", ".join(f"{r:.3f}" for r in ratios[-1]), flush=True)
    print(f"\nLaplacian energy relative to the unmoved volume, median of {len(picks)} training scans "
          "(mild noise adds 1.09, bench_smoothing.py):")
    for (name, _, _), column in zip(compared, np.array(ratios).T):
        print(f"  {name:<36} {np.median(column):.3f}  (range {column.min():.3f}-{column.max():.3f})")


if __name__ == "__main__":
    main()
