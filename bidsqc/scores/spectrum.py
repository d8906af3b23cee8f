"""Scores read off the magnitude spectrum: spike (an isolated peak) and truncation (a cliff).

How they are defined and why: docs/scores.md.
"""

import numpy as np
from scipy import fft, ndimage

from .volume import as_volume

#: fraction of each axis over which the volume is tapered to 0 (half at each end) before
#: its spectrum is taken (spike and truncation scores)
SPECTRUM_TAPER = 0.2
#: exact zeros that fill a region at least this wide (voxels, an opening) are taken as
#: blanked (a defaced face, zero padding, the outside of a skull-stripped brain), not measured
ZERO_REGION_VOXELS = 5
#: sigma (mm) of the ramp over which the scan falls to 0 at the edge of a blanked region
ZERO_RAMP_MM = 4.0
#: k-space radius (cycles per voxel) inside which the image's own low frequencies dominate
SPIKE_MIN_RADIUS = 0.02
#: (outer, inner) half-widths of the shell whose median is a candidate's surroundings
SPIKE_SHELL = (4, 2)
#: candidates (by radial z-score) examined for local prominence
SPIKE_CANDIDATES = 64


def _taper(n):
    """(n,) float32 Tukey window, flat but for a cosine fall over SPECTRUM_TAPER / 2 of each end."""
    edge = int(np.floor(SPECTRUM_TAPER * (n - 1) / 2))
    window = np.ones(n, np.float32)
    if edge > 0:
        ramp = 0.5 * (1 - np.cos(np.pi * np.arange(edge) / edge))
        window[:edge] = ramp
        window[n - edge:] = ramp[::-1]
    return window


def _measured_weight(data, zooms):
    """(shape) float32 weight: 0 in regions of exact zeros at least ZERO_REGION_VOXELS wide
    (blanked, not measured), rising smoothly (Gaussian of sigma ZERO_RAMP_MM) to 1 inside
    the measured image; None where there is no such region. Zeros scattered in a noisy
    background (an 8-bit scan's) are too small to count."""
    zero = data == 0
    if not zero.any():
        return None
    # an opening by a cube, as two separable box filters (a 3D binary opening is far slower)
    blanked = ndimage.minimum_filter(zero.view(np.uint8), size=ZERO_REGION_VOXELS, mode="nearest")
    blanked = ndimage.maximum_filter(blanked, size=ZERO_REGION_VOXELS, mode="nearest").view(bool)
    if not blanked.any():
        return None
    sigma = [ZERO_RAMP_MM / float(z) for z in zooms]
    inside = ndimage.gaussian_filter((~blanked).astype(np.float32), sigma, mode="nearest")
    return np.clip(2 * inside - 1, 0, 1, out=inside)


def magnitude_spectrum(data, zooms=(1.0, 1.0, 1.0)):
    """|FFT| of the mean-removed volume tapered at the edges of the field of view (_taper
    along each axis) and of any blanked region (_measured_weight), centred (fftshift),
    float32. A field of view that ends inside the head (the neck of every raw head) is a cut
    in the periodic image the FFT sees, whose spectrum spreads along the axis lines near a
    strong frequency of the cut cross-section, as peaks a spike detector would take for
    spikes; the taper takes the cut away. A blanked region with a straight edge through the
    head (the face of a defaced scan) makes the same peaks along its edge's normal; the
    weight takes that edge away."""
    weight = _measured_weight(data, zooms)
    if weight is None:
        tapered = data - data.mean()
    else:
        tapered = (data - np.float32((data * weight).sum() / max(float(weight.sum()), 1e-6))) * weight
    for axis, n in enumerate(data.shape):
        tapered *= _taper(n).reshape([-1 if a == axis else 1 for a in range(3)])
    return np.abs(fft.fftshift(fft.fftn(tapered, workers=-1))).astype(np.float32)


def spike_score(data, magnitude=None, zooms=(1.0, 1.0, 1.0)):
    """Prominence (natural log) of the strongest isolated peak of the magnitude spectrum
    outside its centre and its axes; about 1-3 for clean images, far higher with a spike."""
    data = as_volume(data)
    shape = data.shape
    mag = magnitude_spectrum(data, zooms) if magnitude is None else magnitude
    floor = np.float32(mag.max() * 1e-9 + 1e-12)
    logk = np.log(mag + floor)
    freqs = [fft.fftshift(fft.fftfreq(n)).astype(np.float32) for n in shape]
    fx, fy, fz = np.meshgrid(*freqs, indexing="ij", sparse=True)
    radius = np.sqrt(fx ** 2 + fy ** 2 + fz ** 2)
    # axis lines (two coordinates at the centre) carry the image's edges; the centre its content
    near = [np.abs(np.arange(n) - n // 2) <= 1 for n in shape]
    nx, ny, nz = np.meshgrid(*near, indexing="ij", sparse=True)
    on_axis = (nx & ny) | (nx & nz) | (ny & nz)
    allowed = (radius >= SPIKE_MIN_RADIUS) & ~on_axis
    # radial z-score picks candidates cheaply; the local shell then measures isolation
    bins = np.minimum((radius / 0.01).astype(np.int32), 87)
    bins = np.broadcast_to(bins, shape)
    sums = np.bincount(bins.ravel(), logk.ravel(), minlength=88)
    counts = np.maximum(np.bincount(bins.ravel(), minlength=88), 1)
    profile = (sums / counts).astype(np.float32)
    z = np.where(allowed, logk - profile[bins], -np.inf)
    flat = np.argpartition(z.ravel(), -SPIKE_CANDIDATES)[-SPIKE_CANDIDATES:]
    best = 0.0
    # the shell between 2 and 4 voxels out: a spike on a head spreads over the head's own
    # spectrum (a lobe of about 2 voxels), which a tighter shell would count as surroundings
    outer, inner = SPIKE_SHELL
    width = 2 * outer + 1
    padded = np.pad(logk, outer, mode="wrap")
    shell = np.ones((width,) * 3, bool)
    shell[(slice(outer - inner, outer + inner + 1),) * 3] = False
    for index in np.array(np.unravel_index(flat, shape)).T:
        if not np.isfinite(z[tuple(index)]):
            continue
        cube = padded[index[0]:index[0] + width, index[1]:index[1] + width, index[2]:index[2] + width]
        best = max(best, float(logk[tuple(index)] - np.median(cube[shell])))
    return round(best, 4)


def truncation_score(data, magnitude=None, zooms=(1.0, 1.0, 1.0)):
    """Sharpest knee of the power spectrum along any axis (power summed over the other two,
    natural log): the largest fall across a few frequency bins in excess of the fall on
    either side of them. Truncated k-space (what rings as Gibbs) falls off a cliff at the
    cut, even after the magnitude image puts some power back above it; a natural spectrum
    falls smoothly (about 0-0.5)."""
    data = as_volume(data)
    mag = magnitude_spectrum(data, zooms) if magnitude is None else magnitude
    best = 0.0
    for axis, n in enumerate(data.shape):
        width = max(2, n // 64)
        half = n // 2
        if half < 8 * width:
            continue
        other = tuple(a for a in range(3) if a != axis)
        profile = (mag.astype(np.float64) ** 2).sum(axis=other)
        radial = np.bincount(np.abs(np.arange(n) - n // 2), profile)[:half]
        logp = np.log(radial / max(radial.sum(), 1e-300) + 1e-30)
        fall = logp[:-2 * width] - logp[2 * width:]           # fall across radius r (index r - width)
        excess = fall[2 * width:-2 * width] - 0.5 * (fall[:-4 * width] + fall[4 * width:])
        start = max(0, half // 16 - 3 * width)                 # the lowest radii fall steeply anyway
        if excess[start:].size:
            best = max(best, float(excess[start:].max()))
    return round(best, 4)
