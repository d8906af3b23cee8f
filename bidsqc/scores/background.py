"""Scores read off the background outside the head: ghost (a shifted copy of the head) and
background (high-passed power: noise, ringing).

How they are defined and why: docs/scores.md.
"""

import numpy as np
from scipy import fft, ndimage

from .volume import as_volume, foreground

#: shifts shorter than this fraction of the field of view are not ghosts but the head's own edge
GHOST_MIN_SHIFT = 1.0 / 8
#: the background lies outside the head (``foreground``) dilated by this margin (mm)
GHOST_MARGIN_MM = 6.0
#: Gaussian width (mm) of the high-pass that both the background and the shifted copy go through
GHOST_HIGHPASS_MM = 2.0
#: larger volumes are scored on 2x2x2 block means (time and memory)
GHOST_MAX_VOXELS = 8_000_000
#: background_score's value for a background with no high-passed power (log10)
BACKGROUND_FLOOR = -6.0


def _head_mask(data, zooms):
    head = foreground(data)
    if head is None:
        return np.ones(data.shape, bool)
    margin = [max(1, int(round(GHOST_MARGIN_MM / z))) for z in zooms]
    # a box dilation, done axis by axis (a 3D structuring element is far slower)
    return ndimage.maximum_filter(head.astype(np.uint8), size=[2 * m + 1 for m in margin]) > 0


def ghost_score(data, zooms=(1.0, 1.0, 1.0)):
    """Largest correlation between the background and a copy of the image shifted along one
    axis by at least GHOST_MIN_SHIFT of its field of view (0 where no background is left)."""
    return background_scores(data, zooms)[0]


def background_score(data, zooms=(1.0, 1.0, 1.0)):
    """log10 of the mean high-passed power outside the dilated head over that inside it:
    about -6 (the floor) for a zeroed background, higher with noise, ghosts or motion
    ringing there."""
    return background_scores(data, zooms)[1]


def background_scores(data, zooms):
    """(ghost_score, background_score) from one high-pass of the volume."""
    data = np.maximum(as_volume(data), 0)
    zooms = [float(z) for z in zooms]
    if data.size > GHOST_MAX_VOXELS:  # ghosts are copies of the whole head: 2x2x2 block means keep them
        even = tuple(slice(0, n - n % 2) for n in data.shape)
        data = data[even].reshape(data.shape[0] // 2, 2, data.shape[1] // 2, 2, data.shape[2] // 2, 2).mean(
            axis=(1, 3, 5))
        zooms = [2 * z for z in zooms]
    background = ~_head_mask(data, zooms)
    n_background = int(background.sum())
    if n_background < 0.02 * data.size:
        return 0.0, BACKGROUND_FLOOR
    # high-pass both: a ghost carries the head's edges, a smooth halo or a noise floor does not
    sigma = [GHOST_HIGHPASS_MM / z for z in zooms]
    edges = (data - ndimage.gaussian_filter(data, sigma)).astype(np.float32)
    residual = np.where(background, edges, 0).astype(np.float32)
    energy = float((residual ** 2).sum())
    inside = float((edges ** 2).sum()) - energy
    ratio = (energy / n_background) / max(inside / max(data.size - n_background, 1), 1e-30)
    background_level = round(max(float(np.log10(ratio)) if ratio > 0 else BACKGROUND_FLOOR, BACKGROUND_FLOOR), 4)
    if energy <= 0:
        return 0.0, background_level
    best = 0.0
    for axis, n in enumerate(data.shape):
        other = tuple(a for a in range(3) if a != axis)
        # C(s) = sum_x b(x) e(x - s): per-line cross-spectra summed over the other axes
        cross = (fft.fft(residual, axis=axis, workers=-1) *
                 np.conj(fft.fft(edges, axis=axis, workers=-1))).sum(axis=other)
        covariance = np.real(fft.ifft(cross))
        # D(s) = sum over background voxels of e(x - s)^2 (e: the high-passed image), by the same route
        power = (fft.fft(background.astype(np.float32), axis=axis, workers=-1) *
                 np.conj(fft.fft(edges ** 2, axis=axis, workers=-1))).sum(axis=other)
        shifted_energy = np.maximum(np.real(fft.ifft(power)), 0)
        shifts = np.arange(n)
        valid = np.minimum(shifts, n - shifts) >= GHOST_MIN_SHIFT * n
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = covariance / np.sqrt(energy * shifted_energy)
        corr = np.where(valid & (shifted_energy > 0), corr, 0)
        best = max(best, float(np.nanmax(corr)))
    return round(best, 4), background_level
