"""Deterministic artifact functions and their parameter samplers.

Every artifact function takes a native-space 3D magnitude image as a float32 array
(plus voxel sizes where millimetres matter) and explicit parameters, and returns
the corrupted array. k-space artifacts use the image's 3D Fourier transform with
the magnitude as a zero-phase signal, as in TorchIO. The ``phase-encode`` axis is
a parameter: NIfTI does not record it reliably, so samplers draw it.

Samplers ``sample_<artifact>(rng, severity, data, zooms)`` draw parameters from the
documented ranges in ``RANGES`` for severity ``mild`` or ``severe`` (severe: a rater
would reject the scan). Parameters are plain JSON-serialisable values.
"""

import numpy as np
import SimpleITK as sitk
from scipy import fft, ndimage

ARTIFACTS = ("motion", "ghosting", "spike", "noise", "bias", "thick_slices",
             "wraparound", "gibbs", "missing_coverage", "bad_slices")
SEVERITIES = ("mild", "severe")

# Documented parameter ranges, (low, high) per severity.
RANGES = {
    "motion": {"n_moves": {"mild": (1, 2), "severe": (2, 4)},
               "rotation_deg": {"mild": (1.0, 2.5), "severe": (3.0, 8.0)},
               "translation_mm": {"mild": (1.0, 2.5), "severe": (3.0, 8.0)}},
    "ghosting": {"period": {"mild": (2, 4), "severe": (2, 4)},
                 "intensity": {"mild": (0.25, 0.45), "severe": (0.6, 0.95)}},
    "spike": {"n_spikes": {"mild": (1, 2), "severe": (1, 3)},
              "intensity": {"mild": (0.04, 0.08), "severe": (0.15, 0.4)}},
    # mild starts above the noise of clean raw scans (see CLEAN_RANGES["noise_sigma"])
    "noise": {"sigma": {"mild": (0.08, 0.12), "severe": (0.15, 0.3)}},
    "bias": {"amplitude": {"mild": (0.35, 0.5), "severe": (0.7, 1.1)}},
    "thick_slices": {"thickness_mm": {"mild": (4.0, 5.5), "severe": (6.5, 10.0)}},
    "wraparound": {"fov_fraction": {"mild": (0.85, 0.92), "severe": (0.6, 0.78)}},
    "gibbs": {"keep_fraction": {"mild": (0.3, 0.4), "severe": (0.12, 0.22)}},
    "missing_coverage": {"fraction": {"mild": (0.1, 0.16), "severe": (0.22, 0.4)}},
    "bad_slices": {"n_slabs": {"mild": (1, 2), "severe": (3, 6)},
                   "width_mm": {"mild": (2.0, 4.0), "severe": (4.0, 8.0)},
                   "scale": {"mild": (0.4, 0.6), "severe": (0.0, 0.2)}},
}

# Variation that a clean scan from another scanner shows; never a reason to reject.
# sharpen and noise_sigma apply with ``raw_scan`` only (bidsqc-train --raw-scan-variation).
# noise_sigma: the skull-stripped training scans are far less noisy than raw scans straight
# from a scanner. Measured here (MAD of neighbour differences in white matter over the
# foreground mean, 1 mm scans): three ds002748 scans 0.021-0.025, a Philips ADNI MPRAGE 0.047, a
# Siemens Trio MPRAGE 0.096 (both clean raw heads); sub-01 with Rician noise of sigma 0.02 / 0.04 /
# 0.07 added measures 0.032 / 0.050 / 0.111. So raw-scan variants get up to 0.06, and mild
# noise starts at 0.08. sharpen: raw 3 T MPRAGEs also show a crisper cortex than the
# training scans; unsharp masking (1 mm Gaussian) of this amount covers it (the previous
# ensemble's p_bad on ds002748 sub-01 rose from 0.07 to 0.28 at amount 1).
CLEAN_RANGES = {"gamma": (0.75, 1.35), "bias_amplitude": (0.0, 0.18), "fwhm_mm": (0.0, 1.6),
                "sharpen": (0.0, 0.8), "noise_sigma": (0.0, 0.06), "fov_margin_fraction": (0.0, 1.0)}

# A clean scan acquired with one coarser axis (ADNI's MPRAGE: 1 x 1 x 1.2 mm): the slice spacing
# along the drawn axis, as a factor of the scan's own. Used for the native-space detectors'
# clean calibration volumes (bidsqc.training.calibrate.native_plan), not for network training.
ANISOTROPIC_RANGE = {"slice_factor": (1.1, 1.6)}


# --------------------------------------------------------------------------- helpers
def _kspace(data):
    return fft.fftshift(fft.fftn(data.astype(np.float32), workers=-1))


def _image(kspace):
    return np.abs(fft.ifftn(fft.ifftshift(kspace), workers=-1)).astype(np.float32)


def foreground_mean(data):
    """Mean intensity of the foreground (voxels above 10% of the 99th percentile)."""
    positive = data[data > 0]
    if positive.size == 0:
        return 1.0
    level = 0.1 * np.percentile(positive, 99)
    return float(data[data > level].mean())


def foreground_bbox(data):
    """(low, high) inclusive voxel bounds of the foreground along each axis."""
    positive = data[data > 0]
    level = 0.1 * np.percentile(positive, 99) if positive.size else 0
    fg = data > level
    bounds = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(fg.any(axis=other))
        bounds.append((int(idx[0]), int(idx[-1])) if idx.size else (0, data.shape[axis] - 1))
    return bounds


def _lines(n, period, axis, ndim=3):
    """Slicer that picks every ``period``-th plane along ``axis``."""
    index = [slice(None)] * ndim
    index[axis] = slice(0, n, period)
    return tuple(index)


# --------------------------------------------------------------------------- artifacts
def motion(data, zooms, axis, times, rotations_deg, translations_mm):
    """Rigid head motion during the scan: k-space planes along the phase-encode ``axis``
    acquired after ``times[i]`` (fraction of the scan, linear ordering) come from a copy
    moved by ``rotations_deg[i]`` (3 angles) and ``translations_mm[i]`` (3 shifts)."""
    n = data.shape[axis]
    out_k = _kspace(data)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(z) for z in zooms))
    center = [(s - 1) * float(z) / 2 for s, z in zip(data.shape, zooms)]
    for time, rot, trans in sorted(zip(times, rotations_deg, translations_mm), key=lambda m: m[0]):
        rigid = sitk.Euler3DTransform(center, *np.deg2rad(rot).tolist(), tuple(float(t) for t in trans))
        moved = sitk.Resample(image, image, rigid, sitk.sitkLinear, 0.0)
        moved_k = _kspace(sitk.GetArrayFromImage(moved).transpose(2, 1, 0))
        start = int(round(time * n))
        index = [slice(None)] * 3
        index[axis] = slice(start, n)
        out_k[tuple(index)] = moved_k[tuple(index)]
    return _image(out_k)


def ghosting(data, axis, period, intensity):
    """Ghosts along the phase-encode ``axis``: every ``period``-th k-space plane scaled by
    (1 - intensity), the centre plane kept; ghosts appear at shifts of n/period."""
    k = _kspace(data)
    n = data.shape[axis]
    center = [slice(None)] * 3
    center[axis] = slice(n // 2, n // 2 + 1)
    keep = k[tuple(center)].copy()
    k[_lines(n, period, axis)] *= (1.0 - intensity)
    k[tuple(center)] = keep
    return _image(k)


def spike(data, positions, intensity):
    """Herringbone from k-space spikes at ``positions`` (fractions of k-space in -0.5..0.5
    per axis, 0 = centre), each of magnitude ``intensity`` times the DC term."""
    k = _kspace(data)
    dc = np.abs(k[tuple(s // 2 for s in data.shape)])
    for pos in positions:
        index = tuple(int(np.clip(round(s // 2 + p * s), 0, s - 1)) for p, s in zip(pos, data.shape))
        k[index] += intensity * dc
    return _image(k)


def noise(data, sigma, seed):
    """Rician noise with standard deviation ``sigma`` times the foreground mean."""
    rng = np.random.default_rng(seed)
    level = sigma * foreground_mean(data)
    real = data + rng.normal(0, level, data.shape).astype(np.float32)
    imag = rng.normal(0, level, data.shape).astype(np.float32)
    return np.sqrt(real * real + imag * imag).astype(np.float32)


def _polynomial(shape, coefficients, order=3):
    coords = [np.linspace(-1, 1, s, dtype=np.float32) for s in shape]
    field = np.zeros(shape, np.float32)
    c = iter(coefficients)
    for i in range(order + 1):
        for j in range(order + 1 - i):
            for k in range(order + 1 - i - j):
                value = next(c)
                if value:
                    field += value * (coords[0][:, None, None] ** i) * (coords[1][None, :, None] ** j) \
                        * (coords[2][None, None, :] ** k)
    return field


def n_bias_coefficients(order=3):
    """Number of polynomial terms of total degree <= order in 3D."""
    return sum(1 for i in range(order + 1) for j in range(order + 1 - i) for _ in range(order + 1 - i - j))


def bias(data, coefficients, order=3):
    """Smooth multiplicative bias field exp(polynomial of total degree ``order``) over the
    image box scaled to -1..1; ``coefficients`` in the (i, j, k) order of ``_polynomial``."""
    return (data * np.exp(_polynomial(data.shape, coefficients, order))).astype(np.float32)


def thick_slices(data, zooms, axis, thickness_mm):
    """Low through-plane resolution: slabs of ``thickness_mm`` along ``axis`` averaged and
    replicated (a thick-slice acquisition interpolated back onto the grid)."""
    factor = max(1, int(round(thickness_mm / zooms[axis])))
    if factor == 1:
        return data.copy()
    averaged = ndimage.uniform_filter1d(data, size=factor, axis=axis, mode="nearest")
    n = data.shape[axis]
    centers = np.minimum((np.arange(n) // factor) * factor + factor // 2, n - 1)
    return np.take(averaged, centers, axis=axis).astype(np.float32)


def wraparound(data, axis, fov_fraction):
    """Aliasing from a field of view ``fov_fraction`` of the object's extent along ``axis``:
    returns (array with the shorter FOV, first kept voxel index); signal beyond one edge
    of the FOV folds onto the opposite edge."""
    low, high = foreground_bbox(data)[axis]
    extent = high - low + 1
    length = max(8, min(data.shape[axis], int(round(fov_fraction * extent))))
    start = int((low + high + 1) // 2 - length // 2)
    shape = list(data.shape)
    shape[axis] = length
    out = np.zeros(shape, np.float32)
    for j in range(data.shape[axis]):
        target = (j - start) % length
        src = [slice(None)] * 3
        dst = [slice(None)] * 3
        src[axis] = j
        dst[axis] = target
        out[tuple(dst)] += data[tuple(src)]
    return out, start


def gibbs(data, axes, keep_fraction):
    """Gibbs ringing: k-space truncated to its central ``keep_fraction`` along ``axes``."""
    k = _kspace(data)
    for axis in axes:
        n = data.shape[axis]
        keep = max(2, int(round(keep_fraction * n)))
        lo = n // 2 - keep // 2
        for part in (slice(0, lo), slice(lo + keep, n)):
            index = [slice(None)] * 3
            index[axis] = part
            k[tuple(index)] = 0
    return _image(k)


def _coverage_cut(data, axis, side, fraction):
    """(first, stop) voxel indices along ``axis`` of the ``fraction`` of the object's extent at ``side``."""
    low, high = foreground_bbox(data)[axis]
    cut = int(round(fraction * (high - low + 1)))
    return (high - cut + 1, data.shape[axis]) if side == "high" else (0, low + cut)


def missing_coverage(data, axis, side, fraction):
    """A cut slab: the ``fraction`` of the object's extent along ``axis`` at ``side``
    (``low`` or ``high``) is outside the field of view (zeroed)."""
    first, stop = _coverage_cut(data, axis, side, fraction)
    out = data.copy()
    index = [slice(None)] * 3
    index[axis] = slice(first, stop)
    out[tuple(index)] = 0
    return out


def coverage_crop(data, axis, side, fraction):
    """Missing coverage as a scanner writes it: the same slab as ``missing_coverage``, cut
    off the array instead of zeroed (a field of view placed too high or too low ends inside
    the head). Returns (array, first kept voxel index along ``axis``)."""
    first, stop = _coverage_cut(data, axis, side, fraction)
    kept = (stop, data.shape[axis]) if side == "low" else (0, first)
    if kept[1] - kept[0] < 8:
        raise ValueError(f"missing coverage: cropping {fraction} of the head along axis {axis} leaves "
                         f"{max(kept[1] - kept[0], 0)} slices")
    index = [slice(None)] * 3
    index[axis] = slice(*kept)
    return data[tuple(index)].copy(), kept[0]


def bad_slices(data, axis, starts, width, scale, mode="dropout"):
    """Slab failures along ``axis``: slabs of ``width`` voxels at ``starts`` are scaled by
    ``scale`` (``dropout``) or swapped pairwise with the next start (``swap``: misordered)."""
    out = data.copy()
    n = data.shape[axis]

    def slab(start):
        index = [slice(None)] * 3
        index[axis] = slice(int(start), int(min(start + width, n)))
        return tuple(index)

    if mode == "swap":
        for a, b in zip(starts[0::2], starts[1::2]):
            w = int(min(width, n - a, n - b))
            ia, ib = [slice(None)] * 3, [slice(None)] * 3
            ia[axis], ib[axis] = slice(a, a + w), slice(b, b + w)
            out[tuple(ia)], out[tuple(ib)] = data[tuple(ib)], data[tuple(ia)]
    else:
        for start in starts:
            out[slab(start)] *= scale
    return out


def reslice(data, zooms, axis, slice_factor):
    """A clean acquisition with slices ``slice_factor`` times thicker along ``axis``: the
    slice profile (Gaussian, the extra width over the native spacing) then linear sampling
    on the coarser grid. Returns (array, the voxel index along ``axis`` of the new first
    slice's centre, in native voxels)."""
    sigma = np.sqrt(max(slice_factor ** 2 - 1.0, 0.0)) / 2.355
    smooth = ndimage.gaussian_filter1d(data, sigma, axis=axis, mode="nearest") if sigma > 0 else data
    n = data.shape[axis]
    m = max(2, int(np.floor(n / slice_factor)))
    offset = 0.5 * slice_factor - 0.5
    matrix = np.ones(3)
    matrix[axis] = slice_factor
    shift = np.zeros(3)
    shift[axis] = offset
    shape = list(data.shape)
    shape[axis] = m
    out = ndimage.affine_transform(smooth, matrix, offset=shift, output_shape=tuple(shape), order=1,
                                   mode="nearest")
    return out.astype(np.float32), offset


def clean_variation(data, zooms, gamma, bias_coefficients, fwhm_mm, sharpen=0.0, noise_sigma=0.0, seed=0):
    """Scanner-to-scanner variation of a clean scan: contrast (power ``gamma`` of the
    intensities), a weak bias field, a resolution change (Gaussian ``fwhm_mm``), a crisper
    reconstruction (unsharp masking of amount ``sharpen`` with a 1 mm Gaussian) and the
    thermal noise of a raw scan (Rician, ``noise_sigma`` times the foreground mean, added
    last as in acquisition). ``sharpen`` and ``noise_sigma`` are zero by default."""
    top = float(np.percentile(data[data > 0], 99.5)) if np.any(data > 0) else 1.0
    out = (np.clip(data, 0, None) / top) ** gamma * top
    out = bias(out.astype(np.float32), bias_coefficients)
    if fwhm_mm > 0:
        out = ndimage.gaussian_filter(out, [fwhm_mm / 2.355 / z for z in zooms])
    if sharpen > 0:
        out = np.clip(out + sharpen * (out - ndimage.gaussian_filter(out, [1.0 / z for z in zooms])), 0, None)
    if noise_sigma > 0:
        out = noise(out, noise_sigma, seed)
    return out.astype(np.float32)


# --------------------------------------------------------------------------- samplers
def _uniform(rng, artifact, name, severity):
    low, high = RANGES[artifact][name][severity]
    return float(rng.uniform(low, high))


def _integer(rng, artifact, name, severity):
    low, high = RANGES[artifact][name][severity]
    return int(rng.integers(low, high + 1))


def _signed(rng, magnitude, n=3):
    return (magnitude * rng.uniform(0.5, 1.0, n) * rng.choice([-1, 1], n)).round(3).tolist()


def sample_motion(rng, severity, data, zooms):
    n = _integer(rng, "motion", "n_moves", severity)
    rot = _uniform(rng, "motion", "rotation_deg", severity)
    trans = _uniform(rng, "motion", "translation_mm", severity)
    return {"axis": int(rng.integers(0, 3)),
            "times": sorted(rng.uniform(0.15, 0.7, n).round(3).tolist()),
            "rotations_deg": [_signed(rng, rot) for _ in range(n)],
            "translations_mm": [_signed(rng, trans) for _ in range(n)]}


def sample_ghosting(rng, severity, data, zooms):
    return {"axis": int(rng.integers(0, 3)), "period": _integer(rng, "ghosting", "period", severity),
            "intensity": round(_uniform(rng, "ghosting", "intensity", severity), 3)}


def sample_spike(rng, severity, data, zooms):
    n = _integer(rng, "spike", "n_spikes", severity)
    positions = []
    for _ in range(n):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        positions.append((direction * rng.uniform(0.05, 0.3)).round(3).tolist())
    return {"positions": positions, "intensity": round(_uniform(rng, "spike", "intensity", severity), 4)}


def sample_noise(rng, severity, data, zooms):
    return {"sigma": round(_uniform(rng, "noise", "sigma", severity), 4), "seed": int(rng.integers(2 ** 31))}


def sample_bias_coefficients(rng, amplitude, order=3):
    """Coefficients whose field spans about +-``amplitude`` (log scale); low orders dominate."""
    coefficients = []
    for i in range(order + 1):
        for j in range(order + 1 - i):
            for k in range(order + 1 - i - j):
                degree = i + j + k
                coefficients.append(0.0 if degree == 0 else float(rng.uniform(-1, 1) * amplitude / degree))
    return [round(c, 4) for c in coefficients]


def sample_bias(rng, severity, data, zooms):
    return {"coefficients": sample_bias_coefficients(rng, _uniform(rng, "bias", "amplitude", severity))}


def sample_thick_slices(rng, severity, data, zooms):
    return {"axis": int(rng.integers(0, 3)),
            "thickness_mm": round(_uniform(rng, "thick_slices", "thickness_mm", severity), 2)}


def sample_wraparound(rng, severity, data, zooms):
    return {"axis": int(rng.integers(0, 2)),
            "fov_fraction": round(_uniform(rng, "wraparound", "fov_fraction", severity), 3)}


def sample_gibbs(rng, severity, data, zooms):
    axes = [int(a) for a in sorted(rng.choice(3, size=int(rng.integers(1, 4)), replace=False))]
    return {"axes": axes, "keep_fraction": round(_uniform(rng, "gibbs", "keep_fraction", severity), 3)}


def sample_missing_coverage(rng, severity, data, zooms):
    return {"axis": int(rng.integers(0, 3)), "side": str(rng.choice(["low", "high"])),
            "fraction": round(_uniform(rng, "missing_coverage", "fraction", severity), 3)}


def sample_bad_slices(rng, severity, data, zooms):
    axis = int(rng.integers(0, 3))
    n = _integer(rng, "bad_slices", "n_slabs", severity)
    width = max(1, int(round(_uniform(rng, "bad_slices", "width_mm", severity) / zooms[axis])))
    low, high = foreground_bbox(data)[axis]
    span = max(1, high - low - width)
    mode = str(rng.choice(["dropout", "swap"]))
    if mode == "swap":
        n = max(2, n + n % 2)
    starts = sorted(int(low + s) for s in rng.choice(span, size=min(n, span), replace=False))
    return {"axis": axis, "starts": starts, "width": width, "mode": mode,
            "scale": round(_uniform(rng, "bad_slices", "scale", severity), 3)}


def sample_anisotropic(rng):
    """Parameters for ``reslice`` from ANISOTROPIC_RANGE: a drawn axis and slice factor."""
    return {"axis": int(rng.integers(0, 3)),
            "slice_factor": round(float(rng.uniform(*ANISOTROPIC_RANGE["slice_factor"])), 3)}


def sample_clean_variation(rng, raw_scan=False):
    """Parameters for ``clean_variation`` from CLEAN_RANGES; with ``raw_scan`` also raw-scan
    sharpening and noise (``bidsqc-train --raw-scan-variation``)."""
    params = {"gamma": round(float(rng.uniform(*CLEAN_RANGES["gamma"])), 3),
              "bias_coefficients": sample_bias_coefficients(
                  rng, float(rng.uniform(*CLEAN_RANGES["bias_amplitude"]))),
              "fwhm_mm": round(float(rng.uniform(*CLEAN_RANGES["fwhm_mm"])), 2)}
    if raw_scan:
        params.update(sharpen=round(float(rng.uniform(*CLEAN_RANGES["sharpen"])), 3),
                      noise_sigma=round(float(rng.uniform(*CLEAN_RANGES["noise_sigma"])), 4),
                      seed=int(rng.integers(2 ** 31)))
    return params


SAMPLERS = {name: globals()[f"sample_{name}"] for name in ARTIFACTS}


# --------------------------------------------------------------------------- images
def sample_params(artifact, severity, rng, data, zooms, crop=False):
    """Draw parameters for ``artifact`` at ``severity`` with ``rng`` (numpy Generator).
    ``crop`` (missing coverage only): the slab is cut off the array (``coverage_crop``),
    not zeroed; the draw is the same either way."""
    if artifact not in SAMPLERS:
        raise ValueError(f"unknown artifact {artifact!r}; choose from {', '.join(ARTIFACTS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; choose mild or severe")
    if crop and artifact != "missing_coverage":
        raise ValueError(f"crop applies to missing_coverage only, not {artifact}")
    params = SAMPLERS[artifact](rng, severity, data, zooms)
    return dict(params, crop=True) if crop else params


def apply_artifact(img, artifact, params):
    """Apply ``artifact`` with ``params`` to a nibabel image; returns a float32 nibabel image."""
    import nibabel as nib

    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f"artifacts need a 3D image, got shape {data.shape}")
    zooms = tuple(float(z) for z in np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0)))
    affine = img.affine.copy()
    if artifact == "motion":
        out = motion(data, zooms, **params)
    elif artifact in ("thick_slices",):
        out = thick_slices(data, zooms, **params)
    elif artifact in ("missing_coverage", "wraparound"):  # both may shorten the array along one axis
        if artifact == "wraparound":
            out, start = wraparound(data, **params)
        else:
            slab = {k: v for k, v in params.items() if k != "crop"}
            out, start = coverage_crop(data, **slab) if params.get("crop") else (missing_coverage(data, **slab), 0)
        first = np.zeros(4)
        first[params["axis"]], first[3] = start, 1
        affine[:3, 3] = (img.affine @ first)[:3]  # the first kept voxel stays where it was
    elif artifact == "clean":
        out = clean_variation(data, zooms, **params)
    elif artifact == "anisotropic":
        out, offset = reslice(data, zooms, **params)
        step = np.eye(4)
        step[params["axis"], params["axis"]] = params["slice_factor"]
        step[params["axis"], 3] = offset
        affine = img.affine @ step
    elif artifact in ARTIFACTS:
        out = globals()[artifact](data, **params)
    else:
        raise ValueError(f"unknown artifact {artifact!r}; choose from {', '.join(ARTIFACTS)}")
    hdr = nib.Nifti1Header()
    hdr.set_xyzt_units("mm")
    return nib.Nifti1Image(out.astype(np.float32), affine, hdr)


def simulate(img, artifact, severity, rng, crop=False):
    """Corrupt ``img`` with ``artifact`` at ``severity``; returns (image, parameters).
    ``crop`` (missing coverage only): cut the slab off the array (``coverage_crop``)."""
    data = np.asarray(img.dataobj, dtype=np.float32)
    zooms = tuple(float(z) for z in np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0)))
    params = sample_params(artifact, severity, rng, data, zooms, crop=crop)
    return apply_artifact(img, artifact, params), params
