"""Moves on the model grid: the random affines of ``--spatial-augment`` and
``--registration-jitter``, applied on the grid (``spatial_transform``, a second resampling)
or composed with the registration (``grid_move``, inside the one resampling).

Plain numpy/scipy, so that the dataset builder and the training both use it without
importing each other.
"""

import numpy as np
from scipy import ndimage

# the residual misalignment and head-shape variation that an affine registration leaves
# (a network trained without moves failed clean scans shifted by 3 voxels, scaled by 10 %
# or rotated by 8 degrees; docs/model.md)
SPATIAL_RANGES = {"rotation_deg": 10.0, "scale": 0.1, "axis_scale": 0.05, "shift_voxels": 2.0}
SPATIAL_ORDER = 3  # cubic B-splines: linear interpolation blurs, and blur reads as an artifact
# --registration-jitter: the same rotations and shifts, but zooms of a few per cent only. A zoom
# at registration changes the fine texture on the grid: SPATIAL_RANGES' extreme zooms (0.855,
# 1.155) give 1.20 and 0.83 times the Laplacian energy, JITTER_RANGES' (0.951, 1.051) 1.06 and
# 0.94, rotations and shifts 1.00 (median of 8 training scans, benchmarks/bench_move_texture.py),
# against the 1.09 that mild noise adds: wide zooms teach the networks to ignore mild noise
JITTER_RANGES = {"rotation_deg": 10.0, "scale": 0.03, "axis_scale": 0.02, "shift_voxels": 2.0}


def axis_rotation(axis, angle):
    """3x3 rotation by ``angle`` (radians) about coordinate ``axis``."""
    i, j = [a for a in range(3) if a != axis]
    rot = np.eye(3)
    rot[i, i] = rot[j, j] = np.cos(angle)
    rot[i, j], rot[j, i] = -np.sin(angle), np.sin(angle)
    return rot


def random_affine(rng, ranges=SPATIAL_RANGES):
    """Draw (3x3 matrix, shift in voxels) for ``spatial_transform``: rotations about each
    axis up to +-rotation_deg, an isotropic scale within 1 +- scale times a per-axis scale
    within 1 +- axis_scale, and a shift up to +-shift_voxels along each axis."""
    matrix = np.eye(3)
    for axis, angle in enumerate(np.radians(rng.uniform(-1, 1, 3) * ranges["rotation_deg"])):
        matrix = axis_rotation(axis, angle) @ matrix
    scale = (1 + rng.uniform(-1, 1) * ranges["scale"]) * (1 + rng.uniform(-1, 1, 3) * ranges["axis_scale"])
    return matrix @ np.diag(scale), rng.uniform(-1, 1, 3) * ranges["shift_voxels"]


def zoom_range(ranges):
    """The smallest and largest zoom ``random_affine`` can draw from ``ranges``."""
    return (1 - ranges["scale"]) * (1 - ranges["axis_scale"]), (1 + ranges["scale"]) * (1 + ranges["axis_scale"])


def jitter_move(move_seed):
    """(3x3 matrix, shift in voxels) of a training volume's ``--registration-jitter`` move,
    drawn from JITTER_RANGES with the volume's ``move_seed``."""
    return random_affine(np.random.default_rng(int(move_seed)), JITTER_RANGES)


def spatial_transform(volume, matrix, shift, order=SPATIAL_ORDER):
    """Apply ``matrix`` about the grid centre, then ``shift`` (voxels), to a grid volume
    (cubic B-spline interpolation, zero outside): output voxel x takes the input at
    inv(matrix) @ (x - centre - shift) + centre.

    Cubic, not linear: linear interpolation at sub-voxel offsets smooths the volume (a
    half-voxel shift kept 0.49 of the clean held-out volumes' Laplacian energy, cubic 0.81),
    and the networks read that smoothing as an artifact (it raised the shipped ensemble's
    median p_bad on the clean held-out scans and raw heads from 0.23 to 0.93, a cubic shift
    to 0.38; benchmarks/bench_smoothing.py, docs/model.md). Even cubic resampling takes away
    more fine texture (one augmentation draw keeps 0.86) than mild noise adds (1.09), so a
    network trained on twice-resampled volumes still reads once-resampled clean scans as
    noisy: an ensemble trained with it from scratch was not shipped (docs/model.md)."""
    centre = (np.array(volume.shape) - 1) / 2.0
    inverse = np.linalg.inv(matrix)
    offset = centre - inverse @ (centre + np.asarray(shift, float))
    return ndimage.affine_transform(volume, inverse, offset, order=order, mode="constant",
                                    cval=0.0, output=np.float32)


def grid_move(matrix, shift, grid_shape, grid_affine):
    """The 4x4 template-space affine that, composed with the registration, moves a scan on
    the grid as ``spatial_transform(volume, matrix, shift)`` would, without resampling the
    volume a second time: output voxel x takes the scan at inv(matrix) @ (x - centre - shift) + centre."""
    centre = (np.asarray(grid_shape, float) - 1) / 2.0
    inverse = np.linalg.inv(np.asarray(matrix, float))
    voxel = np.eye(4)
    voxel[:3, :3] = inverse
    voxel[:3, 3] = centre - inverse @ (centre + np.asarray(shift, float))
    grid_affine = np.asarray(grid_affine, float)
    return grid_affine @ voxel @ np.linalg.inv(grid_affine)
