"""Native-space scores: detectors for the artifacts the model's grid cannot see, and the
scores that name an artifact.

The network rates a 2.5 mm template-space volume inside a dilated brain mask. Five artifacts
leave most of their evidence where that input does not look:

- ``spike``: a k-space spike is one bright point in k-space, so its herringbone is a plane
  wave over the whole field of view, often finer than the grid can hold (a wave of 0.3
  cycles per native voxel is gone at 2.5 mm).
- ``ghosting``: a ghost is a shifted copy of the head along the phase-encode axis, and most
  of it lands in the background, which the input mask removes.
- ``thick_slices``: slices several millimetres thick, interpolated or copied onto a finer
  grid, make neighbouring slices along one axis nearly identical; at 2.5 mm this looks
  much like a smooth brain.
- ``bad_slices``: a slab of a few slices dropped in intensity or out of order is a few
  millimetres thick, about one voxel of the 2.5 mm grid.
- ``noise``: white noise is averaged away by the resampling to 2.5 mm (a 1 mm scan's noise
  falls about four times), where a grainy brain looks much like a clean one.

So they are measured on the image as acquired (its own voxel grid, before any resampling):

- ``spike_score``: the prominence of the strongest isolated peak in the magnitude spectrum,
  in natural-log units above the median of its surroundings (the voxels 3-4 away
  from it). A clean image's spectrum is smooth away from its centre and its axes. The
  spectrum is of the volume tapered at the edges of its field of view, so that a head cut
  by the field of view (raw heads end in the neck) does not leak peaks along the axes.
- ``ghost_score``: the largest correlation, over shifts along each axis of at least an
  eighth of the field of view, between the background (outside the dilated head) and the
  shifted image. A clean background is noise or zero and matches no shifted copy of the head.
- ``thick_score``: how much smaller the difference between neighbouring slices is along the
  smoothest axis than along the other two (natural log). A clean scan with one coarser axis
  scores a little (0.13-0.14 at 1.2 mm), so its clean calibration volumes include such scans.
- ``slice_score``: the largest break between neighbouring slices, relative to its running
  median (natural log). A break into the zero-filled planes at an end of an axis (zero
  padding, or a slab the field of view cut away) counts only where the cut passes through
  the brain: inside the extent of the template brain mapped into the scan by its
  registration, so a neck cut followed by zero padding is not a bad
  slice; with no registration given, every break counts.
- ``noise_score``: the noise level relative to the intensity in the most uniform parts of
  the head (6-voxel cubes inside it; the 10th percentile over them of the robust
  neighbour-difference noise over the cube's mean), so that skull, scalp and tissue edges,
  which raise other cubes, barely move it.

Each detector score is turned into a decision by a threshold calibrated on training
volumes (``calibrate``; stored in the model card), never by a hand-set value.

Six more scores only help name the artifact (bidsqc.model.naming), since clean scans
from other scanners vary in them too much for a threshold learnt from the training scans:
``truncation_score`` (a cliff in the spectrum: truncated k-space, which rings as Gibbs),
``bias_score`` (the span of a smooth intensity field), ``background_score``
(high-passed power outside the head: noise, motion ringing), ``uncovered_score`` (the
share of the registered template brain outside the measured field of view: missing
coverage, whether the field of view ends in the brain or a slab of it is zero-filled; an
affine registration of an unusual brain, such as an infant's, leaves some of it uncovered
too, which is why it is no detector), ``fold_score`` (how far the head reaches both
ends of an axis and runs on across that edge as if periodic: a fold, where a field of
view that ends inside the head holds different anatomy at its two ends; it tells
wrap-around from a cut for the naming, but a clean scan whose field of view is tight to
the head reaches its ends too, which is why it is no detector) and ``inner_slice_score``
(slice_score leaving out every break into zero-filled end planes: slices dropped or out of
order break inside the data, a slab of missing coverage zero-filled at an end breaks only
there; slice_score, the detector, counts both).
"""

import numpy as np
from scipy import fft, ndimage

#: detectors whose calibrated score can raise p_bad (named after the artifact they detect)
DETECTORS = ("spike", "ghosting", "thick_slices", "bad_slices", "noise")
#: the output table's column of each detector's score
SCORE_COLUMNS = {"spike": "spike_score", "ghosting": "ghost_score", "thick_slices": "thick_score",
                 "bad_slices": "slice_score", "noise": "noise_score"}
#: every native-space score, in the order the artifact naming uses them
FEATURES = ("spike", "ghosting", "thick_slices", "truncation", "bias", "background", "bad_slices", "noise",
            "uncovered", "fold", "inner_slices")
#: the scores that need the scan's registration to the template (``brain_voxels``)
REGISTERED = ("bad_slices", "uncovered")
#: fraction of each axis over which the volume is tapered to 0 (half at each end) before
#: its spectrum is taken (spike and truncation scores)
SPECTRUM_TAPER = 0.2
#: exact zeros that fill a region at least this wide (voxels, an opening) are taken as
#: blanked (a defaced face, zero padding, the outside of a skull-stripped brain), not measured
ZERO_REGION_VOXELS = 5
#: sigma (mm) of the ramp over which the scan falls to 0 at the edge of a blanked region
ZERO_RAMP_MM = 4.0
#: versions of the scores whose definition changed since they were first cached; a cache
#: (detectors.tsv) stores a score under ``feature_column(name)``, so an older one is recomputed
FEATURE_VERSIONS = {"spike": 3, "truncation": 3, "bad_slices": 2}
#: k-space radius (cycles per voxel) inside which the image's own low frequencies dominate
SPIKE_MIN_RADIUS = 0.02
#: (outer, inner) half-widths of the shell whose median is a candidate's surroundings
SPIKE_SHELL = (4, 2)
#: candidates (by radial z-score) examined for local prominence
SPIKE_CANDIDATES = 64
#: shifts shorter than this fraction of the field of view are not ghosts but the head's own edge
GHOST_MIN_SHIFT = 1.0 / 8
#: the head mask: voxels above this fraction of the 99th percentile, dilated by GHOST_MARGIN_MM
GHOST_FOREGROUND = 0.1
GHOST_MARGIN_MM = 6.0
#: Gaussian width (mm) of the high-pass that both the background and the shifted copy go through
GHOST_HIGHPASS_MM = 2.0
#: larger volumes are scored on 2x2x2 block means (time and memory)
GHOST_MAX_VOXELS = 8_000_000
#: background_score's value for a background with no high-passed power (log10)
BACKGROUND_FLOOR = -6.0
#: thick_score's quantile of the slice-pair roughness: below 0.5, so that slices copied in
#: pairs (a 4-5 mm slice on a 2 mm grid: every other pair identical) already count
THICK_QUANTILE = 0.4
#: thick_score's roughness floor, a fraction of the head's mean intensity (copied slices differ by 0)
THICK_FLOOR = 1e-3
#: bias_score's block edge (mm)
BIAS_BLOCK_MM = 12.0
#: slice_score: half-width (mm) of the running median a slice pair is compared with, and the
#: least head area (fraction of the largest) of a slice pair that counts
SLICE_WINDOW_MM = 10.0
SLICE_MIN_AREA = 0.25
#: noise_score: the cube edge (voxels), the quantile over the cubes inside the head, and the
#: fewest such cubes a head must have to be scored
NOISE_BLOCK = 6
NOISE_QUANTILE = 0.1
NOISE_MIN_BLOCKS = 20
#: fold_score: the power of the continuity factor (a cut end's 0.1-0.7 falls to 0.001-0.3, a
#: fold's 0.8-1 stays high), and the fewest head voxels the two end slices must hold
FOLD_CONTINUITY_POWER = 3
FOLD_MIN_VOXELS = 10
#: the median absolute deviation of a normal variable over its standard deviation
MAD_TO_SD = 0.6745


def feature_column(name):
    """The column a cached score is stored under: its name, with ``_v<version>`` from its
    second definition on (FEATURE_VERSIONS)."""
    version = FEATURE_VERSIONS.get(name, 1)
    return name if version == 1 else f"{name}_v{version}"


def _as_volume(data):
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 3 or min(data.shape) < 8:
        raise ValueError(f"the detectors need a 3D volume of at least 8 voxels per axis, got shape {data.shape}")
    if np.isfinite(data).all():  # the usual case: no copy (nan_to_num copies, slowly for a Fortran-ordered NIfTI)
        return data
    return np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)


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


def _magnitude_spectrum(data, zooms=(1.0, 1.0, 1.0)):
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
    data = _as_volume(data)
    shape = data.shape
    mag = _magnitude_spectrum(data, zooms) if magnitude is None else magnitude
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


def _foreground(data):
    """The head: voxels above GHOST_FOREGROUND of the 99th percentile, opened once; None for
    an image with no signal. ``data`` non-negative."""
    high = np.percentile(data, 99)
    if high <= 0:
        return None
    return ndimage.binary_opening(data > GHOST_FOREGROUND * high, iterations=1)


def _blocks(volume, size):
    """``volume`` cut into blocks of ``size`` voxels per axis (what is left over at the far
    end of each axis is dropped): (blocks along x, y, z, size x, size y, size z), a view
    where it can be."""
    counts = [n // s for n, s in zip(volume.shape, size)]
    cropped = volume[tuple(slice(0, c * s) for c, s in zip(counts, size))]
    return cropped.reshape(counts[0], size[0], counts[1], size[1], counts[2], size[2]).transpose(0, 2, 4, 1, 3, 5)


def _pair_slices(axis):
    """(later, earlier) slicers of every pair of neighbouring slices along ``axis``."""
    lead = [slice(None)] * 3
    lag = [slice(None)] * 3
    lead[axis], lag[axis] = slice(1, None), slice(None, -1)
    return tuple(lead), tuple(lag)


def _head_mask(data, zooms):
    head = _foreground(data)
    if head is None:
        return np.ones(data.shape, bool)
    margin = [max(1, int(round(GHOST_MARGIN_MM / z))) for z in zooms]
    # a box dilation, done axis by axis (a 3D structuring element is far slower)
    return ndimage.maximum_filter(head.astype(np.uint8), size=[2 * m + 1 for m in margin]) > 0


def ghost_score(data, zooms=(1.0, 1.0, 1.0)):
    """Largest correlation between the background and a copy of the image shifted along one
    axis by at least GHOST_MIN_SHIFT of its field of view (0 where no background is left)."""
    return _background_scores(data, zooms)[0]


def background_score(data, zooms=(1.0, 1.0, 1.0)):
    """log10 of the mean high-passed power outside the dilated head over that inside it:
    about -6 (the floor) for a zeroed background, higher with noise, ghosts or motion
    ringing there."""
    return _background_scores(data, zooms)[1]


def _background_scores(data, zooms):
    """(ghost_score, background_score) from one high-pass of the volume."""
    data = np.maximum(_as_volume(data), 0)
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


def thick_score(data, zooms=(1.0, 1.0, 1.0), head=None):
    """How much smoother the image is from slice to slice along its smoothest axis than
    along the other two: natural log of the other axes' roughness (geometric mean) over
    that axis', where roughness is the THICK_QUANTILE over neighbouring-slice pairs of the
    mean absolute difference inside the head. About 0-0.15 for a scan acquired on its grid
    (a little more with one coarser axis: 0.13-0.14 for ds002748 sub-01 resampled to 1.2 mm
    along one axis), several units for thick slices interpolated or copied onto a finer
    grid. ``head``: the scan's ``_foreground``, where the caller has it already."""
    data = np.maximum(_as_volume(data), 0)
    head = _foreground(data) if head is None else head
    if head is None:
        return 0.0
    floor = THICK_FLOOR * float(data[head].mean()) if head.any() else 1e-6
    roughness = []
    for axis in range(3):
        lead, lag = _pair_slices(axis)
        pair = head[lead] & head[lag]
        step = np.abs(data[lead] - data[lag]) * pair
        other = tuple(a for a in range(3) if a != axis)
        count = pair.sum(axis=other)
        used = count >= max(1, 0.05 * count.max())
        per_pair = step.sum(axis=other)[used] / count[used]
        roughness.append(max(float(np.quantile(per_pair, THICK_QUANTILE)) if per_pair.size else floor, floor))
    roughness = np.array(roughness)
    best = max(np.log(np.sqrt(np.prod(np.delete(roughness, a))) / roughness[a]) for a in range(3))
    return round(float(best), 4)


def _data_ends(data):
    """Per axis, the (first, last) plane holding any non-zero voxel: the planes beyond them
    are zero-filled (padding, or a slab cut away to the array edge); None for an empty image."""
    nonzero = data != 0
    if not nonzero.any():
        return None
    ends = []
    for axis in range(3):
        filled = np.flatnonzero(nonzero.any(axis=tuple(a for a in range(3) if a != axis)))
        ends.append((int(filled[0]), int(filled[-1])))
    return ends


def brain_voxels(img_affine, template_to_t1w, template_mask):
    """The template brain's voxels mapped into an image by its registration: (3, n) voxel
    coordinates in the image (``img_affine``) of each brain voxel of ``template_mask`` (a
    nibabel brain mask), through ``template_to_t1w`` (template world to image world)."""
    mask = np.asarray(template_mask.dataobj) > 0.5
    ijk = np.stack(np.nonzero(mask)).astype(np.float64)
    to_voxels = np.linalg.inv(np.asarray(img_affine, np.float64)) @ np.asarray(template_to_t1w, np.float64) \
        @ np.asarray(template_mask.affine, np.float64)
    return to_voxels[:3, :3] @ ijk + to_voxels[:3, 3:4]


def brain_extent(brain):
    """Per axis, the (low, high) voxel coordinates ``brain`` (``brain_voxels``) spans."""
    return [(round(float(axis.min()), 2), round(float(axis.max()), 2)) for axis in np.asarray(brain)]


def uncovered_score(data, brain):
    """The share of the template brain (``brain_voxels``) outside the measured field of view:
    beyond the array, or in the zero-filled planes at an end of an axis (a slab cut away,
    zero padding); 0 to 1."""
    data = _as_volume(data)
    brain = np.asarray(brain)
    ends = _data_ends(data)
    if ends is None:
        return 1.0
    outside = np.zeros(brain.shape[1], bool)
    for axis, (first, last) in enumerate(ends):
        outside |= (brain[axis] < first - 0.5) | (brain[axis] > last + 0.5)
    return round(float(outside.mean()), 4) if outside.size else 0.0


def _slice_breaks(data, zooms, head):
    """Per axis with at least 3 slice pairs that count: (axis, breaks, used). ``breaks``
    (one per pair of neighbouring slices): natural log of the pair's relative difference
    (mean absolute difference over mean intensity, inside the head of either slice) over its
    running median (+-SLICE_WINDOW_MM); ``used``: the pairs whose head covers at least
    SLICE_MIN_AREA of the largest. ``data`` non-negative."""
    out = []
    for axis in range(3):
        lead, lag = _pair_slices(axis)
        pair = head[lead] | head[lag]  # either slice: a dropped slab leaves the head mask
        other = tuple(a for a in range(3) if a != axis)
        count = pair.sum(axis=other)
        step = (np.abs(data[lead] - data[lag]) * pair).sum(axis=other)
        level = (np.maximum(data[lead], data[lag]) * pair).sum(axis=other)
        used = count >= SLICE_MIN_AREA * max(int(count.max()), 1)
        if used.sum() < 3:
            continue
        relative = step[used] / np.maximum(level[used], 1e-9)
        filled = np.full(count.shape, float(np.median(relative)))
        filled[used] = relative
        k = max(3, int(round(SLICE_WINDOW_MM / float(zooms[axis]))))
        median = ndimage.median_filter(filled, size=2 * k + 1, mode="nearest")
        out.append((axis, np.log(np.maximum(filled, 1e-9) / np.maximum(median, 1e-9)), used))
    return out


def _largest_break(data, zooms, head, breaks, left_out):
    """The largest of the counted ``_slice_breaks`` (``breaks``, or computed here); ``head``:
    as thick_score. ``left_out(axis, i)``: whether the break of pair i into the zero-filled
    end planes of ``axis`` is left out (None: every break counts)."""
    data = np.maximum(_as_volume(data), 0)
    head = _foreground(data) if head is None else head
    if head is None:
        return 0.0
    best = 0.0
    ends = _data_ends(data) if left_out is not None else None
    for axis, ratio, used in _slice_breaks(data, zooms, head) if breaks is None else breaks:
        counted = used.copy()
        if ends is not None:
            # pair i joins planes i and i + 1: the end pairs join the data to its zero-filled planes
            for i in (ends[axis][0] - 1, ends[axis][1]):
                if 0 <= i < counted.size and left_out(axis, i):
                    counted[i] = False
        if counted.any():
            best = max(best, float(ratio[counted].max()))
    return round(best, 4)


def slice_score(data, zooms=(1.0, 1.0, 1.0), head=None, extent=None, breaks=None):
    """The largest break between neighbouring slices along any axis (``_slice_breaks``). A
    slab dropped in intensity, slices out of order or a slab cut away break the run of
    similar neighbours (about 1-2.5); a clean scan changes smoothly (about 0.3-0.6).
    ``head``: as thick_score. ``extent`` (``brain_extent``): a break into the zero-filled
    end planes of an axis is left out where the plane between them lies outside the brain's
    extent (the cut misses the brain); None counts every break. ``breaks``: this volume's
    ``_slice_breaks``, where already computed."""
    # the cut of end pair i lies between its planes, at i + 0.5
    left_out = None if extent is None else (lambda axis, i: not extent[axis][0] < i + 0.5 < extent[axis][1])
    return _largest_break(data, zooms, head, breaks, left_out)


def inner_slice_score(data, zooms=(1.0, 1.0, 1.0), head=None, breaks=None):
    """slice_score inside the measured data: the largest break between neighbouring slices,
    leaving out every break into the zero-filled planes at an end of an axis, wherever the
    brain lies. A slab zero-filled at an end (missing coverage) breaks there only; slices
    dropped or out of order break inside. Naming only. ``head``, ``breaks``: as slice_score."""
    return _largest_break(data, zooms, head, breaks, lambda axis, i: True)


def noise_score(data, zooms=(1.0, 1.0, 1.0), head=None):
    """Noise in the most even parts of the head, relative to their intensity: the head is cut
    into NOISE_BLOCK-voxel cubes; in each cube wholly inside the head, the median absolute
    difference of neighbouring voxels (over MAD_TO_SD and sqrt 2, as for white noise; the
    smallest over the three axes) over the cube's mean; then the NOISE_QUANTILE of that over
    the cubes, which falls in the most uniform tissue (white matter), where anatomy adds
    least. Skull, scalp and edges only raise cubes above that quantile. ``head``: as
    thick_score; ``zooms`` unused (noise is per voxel)."""
    data = np.maximum(_as_volume(data), 0)
    head = _foreground(data) if head is None else head
    if head is None:
        return 0.0
    size = (NOISE_BLOCK,) * 3
    inside = _blocks(head, size).all(axis=(3, 4, 5))
    if inside.sum() < NOISE_MIN_BLOCKS:
        return 0.0
    values = _blocks(data, size)[inside]  # (cubes, 6, 6, 6)
    level = values.mean(axis=(1, 2, 3))
    sigma = np.min([np.median(np.abs(np.diff(values, axis=axis)).reshape(len(values), -1), axis=1)
                    for axis in (1, 2, 3)], axis=0) / (MAD_TO_SD * np.sqrt(2))
    ratio = sigma[level > 0] / level[level > 0]
    if ratio.size < NOISE_MIN_BLOCKS:
        return 0.0
    return round(float(np.quantile(ratio, NOISE_QUANTILE)), 4)


def fold_score(data, zooms=(1.0, 1.0, 1.0), head=None):
    """Wrap-around against a field of view that ends inside the head. A field of view
    shorter than the head folds what lies beyond one end onto the other, so the head reaches
    both ends and the image runs on across the edge as if periodic (the last slice's
    neighbour is the first). Per axis: the smaller of the head's cross-sections in the two
    end slices over its largest cross-section (presence), times (step / jump) **
    FOLD_CONTINUITY_POWER capped at 1 (continuity); jump is the mean absolute difference
    between the two end slices, step that of each end slice with its inner neighbour, both
    over the head in either end slice. A field of view that ends inside the head without
    folding (the outside discarded) also reaches both ends, but holds different anatomy at
    them, so the jump exceeds the step. The largest over the axes, 0 to 1. ``head``: as
    thick_score; ``zooms`` unused (the ends are single slices)."""
    data = np.maximum(_as_volume(data), 0)
    head = _foreground(data) if head is None else head
    if head is None:
        return 0.0
    best = 0.0
    for axis in range(3):
        if data.shape[axis] < 4:
            continue
        area = head.sum(axis=tuple(a for a in range(3) if a != axis))
        support = np.take(head, 0, axis=axis) | np.take(head, -1, axis=axis)
        if support.sum() < FOLD_MIN_VOXELS:
            continue
        presence = min(area[0], area[-1]) / area.max()
        first, second, before, last = (np.take(data, i, axis=axis)[support] for i in (0, 1, -2, -1))
        jump = float(np.abs(first - last).mean())
        step = 0.5 * float(np.abs(first - second).mean() + np.abs(last - before).mean())
        continuity = min(1.0, step / jump) if jump > 0 else 1.0
        best = max(best, float(presence) * continuity ** FOLD_CONTINUITY_POWER)
    return round(best, 5)


def truncation_score(data, magnitude=None, zooms=(1.0, 1.0, 1.0)):
    """Sharpest knee of the power spectrum along any axis (power summed over the other two,
    natural log): the largest fall across a few frequency bins in excess of the fall on
    either side of them. Truncated k-space (what rings as Gibbs) falls off a cliff at the
    cut, even after the magnitude image puts some power back above it; a natural spectrum
    falls smoothly (about 0-0.5)."""
    data = _as_volume(data)
    mag = _magnitude_spectrum(data, zooms) if magnitude is None else magnitude
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


def bias_score(data, zooms=(1.0, 1.0, 1.0), head=None):
    """Span (natural log) of a smooth intensity field across the head: a quadratic fitted to
    the log of each ~BIAS_BLOCK_MM block's bright-tissue level (its 95th percentile, blocks
    at least half inside the head). A bias field adds its span; tissue contrast between
    blocks mostly averages out in the fit. ``head``: as thick_score."""
    data = np.maximum(_as_volume(data), 0)
    head = _foreground(data) if head is None else head
    if head is None:
        return 0.0
    size = [max(2, int(round(BIAS_BLOCK_MM / float(z)))) for z in zooms]
    counts = [n // b for n, b in zip(data.shape, size)]
    if min(counts) < 3:
        return 0.0

    def blocks(volume):
        return _blocks(volume, size).reshape(counts[0], counts[1], counts[2], -1)

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


def scores(data, zooms=(1.0, 1.0, 1.0), only=None, brain=None):
    """The native-space scores (FEATURES, or the names in ``only``) of one volume; the
    spectrum, the background high-pass and the head mask are computed once, and only where
    needed. ``brain``: the registered template brain (``brain_voxels``), which the scores in
    REGISTERED need; without it the slice score counts every break, and ``uncovered`` is
    left out (an error where ``only`` asks for it)."""
    data = np.ascontiguousarray(_as_volume(data))  # a NIfTI reads Fortran-ordered; C order is faster here
    wanted = list(FEATURES) if only is None else [f for f in FEATURES if f in set(only)]
    if brain is None and "uncovered" in wanted:
        if only is not None:
            raise ValueError("the uncovered score needs the scan's registration to the template")
        wanted.remove("uncovered")
    out = {}
    if "uncovered" in wanted:
        out["uncovered"] = uncovered_score(data, brain)
    if {"spike", "truncation"} & set(wanted):
        magnitude = _magnitude_spectrum(data, zooms)
        if "spike" in wanted:
            out["spike"] = spike_score(data, magnitude)
        if "truncation" in wanted:
            out["truncation"] = truncation_score(data, magnitude)
        del magnitude
    if {"ghosting", "background"} & set(wanted):
        out["ghosting"], out["background"] = _background_scores(data, zooms)
    by_head = {"thick_slices": thick_score, "bias": bias_score, "bad_slices": slice_score, "noise": noise_score,
               "fold": fold_score, "inner_slices": inner_slice_score}
    if set(by_head) & set(wanted):
        positive = np.maximum(data, 0)
        head = _foreground(positive)  # one head mask for the scores that use it
        breaks = _slice_breaks(positive, zooms, head) \
            if head is not None and {"bad_slices", "inner_slices"} & set(wanted) else None
        for name, score in by_head.items():
            if name in wanted:
                extra = {"breaks": breaks} if name in ("bad_slices", "inner_slices") else {}
                if name == "bad_slices":
                    extra["extent"] = brain_extent(brain) if brain is not None else None
                out[name] = score(positive, zooms, head=head, **extra) if head is not None else 0.0
    return {f: out[f] for f in wanted}


# --------------------------------------------------------------------------- calibration
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


def probability(score, calibration, threshold, half_width_logit):
    """A detector score on the ensemble's p_bad scale: ``threshold`` (the ensemble's) at the
    detector's threshold, the ensemble's uncertain band at the detector's ``low`` and
    ``high``, linear in log-odds against log(score) in between and above. Below ``low``
    (where 99% of clean training volumes lie) the detector has no evidence and gives 0, so
    it never moves a clean scan's p_bad there."""
    t, low, high = (float(calibration[k]) for k in ("threshold", "low", "high"))
    score = float(score)
    if score < low:
        return 0.0
    span = np.log(high / t) if score >= t else np.log(t / low)
    logit = np.log(threshold / (1 - threshold)) + half_width_logit * np.log(score / t) / max(span, 1e-6)
    return float(1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30))))


def combine(p_bad, detector_scores, calibrations, threshold, half_width_logit):
    """The scan's p_bad with the detectors: the largest of the network's p_bad and each
    detector's probability. Returns (p_bad, {detector: probability}, the detector that set
    p_bad above the network's, or None)."""
    probabilities = {name: round(probability(detector_scores[name], cal, threshold, half_width_logit), 4)
                     for name, cal in calibrations.items() if detector_scores.get(name) is not None}
    top = max(probabilities, key=probabilities.get) if probabilities else None
    if top is not None and probabilities[top] > p_bad:
        return probabilities[top], probabilities, top
    return float(p_bad), probabilities, None


def apply(result, index, detector_scores, calibrations, threshold, band):
    """Bring the detectors into volume ``index`` of an ensemble ``QCResult``: where one sets
    p_bad above the network's, raise the volume's p_bad and its folds' (``raise_p_bad``), so
    its verdict follows. Returns ({detector: probability}, the detector that did, or None)."""
    from .model.ensemble import band_half_width_logit

    p_bad, probabilities, flagged = combine(float(result.p_bad[index]), detector_scores, calibrations,
                                            threshold, band_half_width_logit(band))
    if flagged:
        result.raise_p_bad(index, p_bad)
    return probabilities, flagged
