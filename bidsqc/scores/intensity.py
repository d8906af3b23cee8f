"""Scores read off the head's intensities: noise (in the most uniform tissue) and bias (a
smooth intensity field).

How they are defined and why: docs/scores.md.
"""

import numpy as np

from .volume import as_volume, foreground, volume_blocks

#: bias_score's block edge (mm)
BIAS_BLOCK_MM = 12.0
#: noise_score: the cube edge (voxels), the quantile over the cubes inside the head, and the
#: fewest such cubes a head must have to be scored
NOISE_BLOCK = 6
NOISE_QUANTILE = 0.1
NOISE_MIN_BLOCKS = 20
#: the median absolute deviation of a normal variable over its standard deviation
MAD_TO_SD = 0.6745


def noise_score(data, zooms=(1.0, 1.0, 1.0), head=None):
    """Noise in the most even parts of the head, relative to their intensity: the head is cut
    into NOISE_BLOCK-voxel cubes; in each cube wholly inside the head, the median absolute
    difference of neighbouring voxels (over MAD_TO_SD and sqrt 2, as for white noise; the
    smallest over the three axes) over the cube's mean; then the NOISE_QUANTILE of that over
    the cubes, which falls in the most uniform tissue (white matter), where anatomy adds
    least. Skull, scalp and edges only raise cubes above that quantile. ``head``: as
    thick_score; ``zooms`` unused (noise is per voxel)."""
    data = np.maximum(as_volume(data), 0)
    head = foreground(data) if head is None else head
    if head is None:
        return 0.0
    size = (NOISE_BLOCK,) * 3
    inside = volume_blocks(head, size).all(axis=(3, 4, 5))
    if inside.sum() < NOISE_MIN_BLOCKS:
        return 0.0
    values = volume_blocks(data, size)[inside]  # (cubes, 6, 6, 6)
    level = values.mean(axis=(1, 2, 3))
    sigma = np.min([np.median(np.abs(np.diff(values, axis=axis)).reshape(len(values), -1), axis=1)
                    for axis in (1, 2, 3)], axis=0) / (MAD_TO_SD * np.sqrt(2))
    ratio = sigma[level > 0] / level[level > 0]
    if ratio.size < NOISE_MIN_BLOCKS:
        return 0.0
    return round(float(np.quantile(ratio, NOISE_QUANTILE)), 4)


def bias_score(data, zooms=(1.0, 1.0, 1.0), head=None):
    """Span (natural log) of a smooth intensity field across the head: a quadratic fitted to
    the log of each ~BIAS_BLOCK_MM block's bright-tissue level (its 95th percentile, blocks
    at least half inside the head). A bias field adds its span; tissue contrast between
    blocks mostly averages out in the fit. ``head``: as thick_score."""
    data = np.maximum(as_volume(data), 0)
    head = foreground(data) if head is None else head
    if head is None:
        return 0.0
    size = [max(2, int(round(BIAS_BLOCK_MM / float(z)))) for z in zooms]
    counts = [n // b for n, b in zip(data.shape, size)]
    if min(counts) < 3:
        return 0.0

    def blocks(volume):
        return volume_blocks(volume, size).reshape(counts[0], counts[1], counts[2], -1)

    inside = blocks(head).mean(axis=-1)
    values = blocks(np.where(head, data, 0))
    m = values.shape[-1]
    level = np.partition(values, int(0.95 * (m - 1)), axis=-1)[..., int(0.95 * (m - 1))]
    use = (inside >= 0.5) & (level > 0)
    if use.sum() < 10:
        return 0.0
    coords = [np.linspace(-1, 1, c) for c in counts]
    x, y, z = np.meshgrid(*coords, indexing="ij")
    x, y, z = x[use], y[use], z[use]
    design = np.stack([np.ones_like(x), x, y, z, x * x, y * y, z * z, x * y, x * z, y * z], axis=1)
    target = np.log(level[use])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    fitted = design @ coef
    return round(float(fitted.max() - fitted.min()), 4)
