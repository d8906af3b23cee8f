"""What the native-space scores share: the checked volume, the head mask, blocks and slice pairs."""

import numpy as np
from scipy import ndimage

#: the head: voxels above this fraction of the 99th percentile (opened once)
HEAD_FOREGROUND = 0.1


def as_volume(data):
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 3 or min(data.shape) < 8:
        raise ValueError(f"the detectors need a 3D volume of at least 8 voxels per axis, got shape {data.shape}")
    if np.isfinite(data).all():  # the usual case: no copy (nan_to_num copies, slowly for a Fortran-ordered NIfTI)
        return data
    return np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)


def foreground(data):
    """The head: voxels above HEAD_FOREGROUND of the 99th percentile, opened once; None for
    an image with no signal. ``data`` non-negative."""
    high = np.percentile(data, 99)
    if high <= 0:
        return None
    return ndimage.binary_opening(data > HEAD_FOREGROUND * high, iterations=1)


def volume_blocks(volume, size):
    """``volume`` cut into blocks of ``size`` voxels per axis (what is left over at the far
    end of each axis is dropped): (blocks along x, y, z, size x, size y, size z), a view
    where it can be."""
    counts = [n // s for n, s in zip(volume.shape, size)]
    cropped = volume[tuple(slice(0, c * s) for c, s in zip(counts, size))]
    return cropped.reshape(counts[0], size[0], counts[1], size[1], counts[2], size[2]).transpose(0, 2, 4, 1, 3, 5)


def pair_slices(axis):
    """(later, earlier) slicers of every pair of neighbouring slices along ``axis``."""
    lead = [slice(None)] * 3
    lag = [slice(None)] * 3
    lead[axis], lag[axis] = slice(1, None), slice(None, -1)
    return tuple(lead), tuple(lag)
