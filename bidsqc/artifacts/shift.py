"""How a good scan from another study differs from the training study's, never a reason to
reject it: voxel size, T1 contrast, a 1.5 T scanner's noise, brain extraction, field of view,
an older brain's atrophy, intensity scale and datatype.

Each shift is a deterministic function of a nibabel image and explicit parameters that
keeps a clean scan clean (the head stays where it is in world coordinates, tissue keeps its
contrast); ``sample_shift(name, rng)`` draws the parameters of one from SHIFT_RANGES.
``benchmarks/bench_shift.py`` measures the ensemble on scans shifted this way.
"""

import nibabel as nib
import numpy as np
from scipy import ndimage

from .simulators import foreground_bbox, noise

SHIFTS = ("resolution", "contrast", "field_strength", "atrophy", "field_of_view", "intensity", "skull_strip")

#: ranges the samplers draw from (and that the benchmark's groups are made with)
SHIFT_RANGES = {
    # another inversion time or field strength: grey matter and CSF against white matter
    "contrast": {"gm_ratio": (0.88, 1.1), "csf_ratio": (0.6, 1.6)},
    # a 1.5 T scanner's thermal noise (Rician, times the foreground mean): clean raw 3 T heads
    # measure 0.02-0.05 on this scale, a 1.5 T scan about twice that of a 3 T one
    "field_strength": {"sigma": (0.03, 0.05)},
    # cortex and the tissue around the ventricles lost to atrophy (mm), replaced by CSF
    "atrophy": {"width_mm": (0.8, 1.6)},
    # zero padding around the field of view (fraction of each axis), or a crop tight to the head (voxels)
    "field_of_view": {"pad_fraction": (0.1, 0.3), "margin_voxels": (1, 4)},
    # a scanner's or a converter's intensity scale and datatype
    "intensity": {"scale": (0.01, 50.0), "dtype": ("uint8", "int16", "float32")},
    # another voxel size: isotropic, or (with p_anisotropic) one axis coarser than the scan's own
    "resolution": {"isotropic_mm": (1.1, 2.2), "slice_mm": (1.3, 3.0), "p_anisotropic": 0.3},
}

#: the shifts a training volume may carry (``bidsqc-train --shift-variation``), in the order
#: they are applied: anatomy, contrast, acquisition grid, thermal noise, field of view,
#: storage. Skull stripping needs a registration and is left to the training scans that
#: come stripped or raw.
TRAINING_SHIFTS = ("atrophy", "contrast", "resolution", "field_strength", "field_of_view", "intensity")


def _image(data, affine, dtype=np.float32):
    hdr = nib.Nifti1Header()
    hdr.set_xyzt_units("mm")
    img = nib.Nifti1Image(np.asarray(data).astype(dtype), affine, hdr)
    img.set_data_dtype(dtype)
    return img


def _zooms(img):
    return np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))


def tissue_levels(data):
    """(CSF, grey matter, white matter) intensity anchors of a T1w head or brain: the 5th,
    40th and 85th percentiles of its foreground (above 10 % of the 99th percentile)."""
    positive = data[data > 0]
    if positive.size == 0:
        raise ValueError("the image has no signal")
    foreground = data[data > 0.1 * np.percentile(positive, 99)]
    return tuple(float(np.percentile(foreground, q)) for q in (5, 40, 85))


def resample_voxels(img, voxel_mm, order=1):
    """The image acquired with voxels of ``voxel_mm`` (one size or three): each axis's slice
    profile widened by a Gaussian of the extra width, then sampled on the coarser (or finer)
    grid covering the same field of view; the affine keeps every point of the head where it
    was in world coordinates."""
    data = np.asarray(img.dataobj, np.float32)
    voxel_mm = np.broadcast_to(np.asarray(voxel_mm, float), (3,))
    factor = voxel_mm / _zooms(img)
    sigma = np.sqrt(np.maximum(factor ** 2 - 1.0, 0.0)) / 2.355
    smooth = ndimage.gaussian_filter(data, sigma, mode="nearest") if np.any(sigma > 0) else data
    shape = tuple(max(2, int(np.floor(n / f))) for n, f in zip(data.shape, factor))
    offset = 0.5 * factor - 0.5  # the first new voxel's centre, in old voxel indices
    out = ndimage.affine_transform(smooth, factor, offset=offset, output_shape=shape, order=order, mode="nearest")
    step = np.eye(4)
    step[:3, :3] = np.diag(factor)
    step[:3, 3] = offset
    return _image(np.clip(out, 0, None), img.affine @ step)


def contrast(img, gm_ratio, csf_ratio):
    """Another T1 contrast (inversion time, field strength): intensities mapped piecewise
    linearly so that grey matter moves to ``gm_ratio`` and CSF to ``csf_ratio`` times their
    level, white matter and everything brighter (fat, marrow) staying; monotone, so the
    tissue order is kept."""
    data = np.asarray(img.dataobj, np.float32)
    csf, gm, wm = tissue_levels(data)
    top = float(data.max())
    targets = [0.0, min(csf * csf_ratio, 0.95 * gm * gm_ratio), min(gm * gm_ratio, 0.97 * wm), wm, max(top, wm)]
    sources = [0.0, csf, gm, wm, max(top, wm)]
    return _image(np.interp(data, sources, targets), img.affine)


def field_strength(img, sigma, seed):
    """The thermal noise of a lower-field scanner: Rician noise of ``sigma`` times the foreground mean."""
    return _image(noise(np.asarray(img.dataobj, np.float32), sigma, seed), img.affine)


def atrophy(img, width_mm):
    """An older brain: the tissue within ``width_mm`` of CSF or of the brain's outside (the
    ventricles' walls, the cortex along the sulci) becomes CSF, so ventricles and sulci
    widen; the tissue left keeps its intensity."""
    data = np.asarray(img.dataobj, np.float32)
    csf, gm, wm = tissue_levels(data)
    zooms = _zooms(img)
    foreground = data > 0.1 * np.percentile(data[data > 0], 99)
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(foreground, iterations=2))
    tissue = brain & (data > 0.5 * (csf + gm))
    radius = np.maximum(1, np.round(width_mm / zooms)).astype(int)
    ball = np.zeros(2 * radius + 1, bool)
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    ball[sum((g / max(r, 1)) ** 2 for g, r in zip(grid, radius)) <= 1] = True
    lost = tissue & ~ndimage.binary_erosion(tissue, ball, border_value=1)
    out = np.where(lost, csf, data)
    return _image(out, img.affine)


def field_of_view(img, pad_fraction=0.0, margin_voxels=None):
    """Another field of view: zero padding of ``pad_fraction`` of each axis on both sides,
    or (``margin_voxels``) a crop to the head's bounding box plus that margin; the affine
    keeps the head where it was."""
    data = np.asarray(img.dataobj, np.float32)
    start = np.zeros(3, int)
    if margin_voxels is not None:
        bounds = foreground_bbox(data)
        start = np.array([max(0, low - margin_voxels) for low, _ in bounds])
        stop = [min(n, high + margin_voxels + 1) for (_, high), n in zip(bounds, data.shape)]
        out = data[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]
    else:
        pad = [int(round(pad_fraction * n)) for n in data.shape]
        out = np.pad(data, [(p, p) for p in pad])
        start = -np.array(pad)
    affine = img.affine.copy()
    affine[:3, 3] = (img.affine @ np.r_[start, 1])[:3]
    return _image(out, affine)


def intensity(img, scale, dtype):
    """Another intensity scale and datatype: intensities times ``scale``, stored as
    ``dtype``: uint8 rescaled to 0-255 as 8-bit converters do; int16 rounded where the
    values fit 1,000-32,767, otherwise stored as integers times a slope (the NIfTI
    ``scl_slope`` a converter writes, so the range is neither clipped nor cut to a few levels)."""
    data = np.clip(np.asarray(img.dataobj, np.float32), 0, None) * float(scale)
    top = max(float(data.max()), 1e-12)
    if dtype == "uint8":
        data = np.round(data / top * 255)
    elif dtype == "int16":
        slope = 1.0 if 1000 <= top <= 32767 else top / 32767
        data = np.round(data / slope) * slope
        out = _image(data, img.affine)
        out.set_data_dtype(np.int16)  # saved with scl_slope = slope
        return out
    return _image(data, img.affine, dtype=np.dtype(dtype))


def skull_strip(img, template_to_t1w, template_mask, margin_mm=3.0):
    """A head with its brain extracted the way a pipeline without a skull-stripping model
    might: everything outside the template brain (``template_mask``, a nibabel mask) mapped
    into the scan by its registration (``template_to_t1w``, template world to scan world)
    and dilated by ``margin_mm`` is set to 0."""
    data = np.asarray(img.dataobj, np.float32)
    to_template = np.linalg.inv(np.asarray(template_mask.affine, float)) @ \
        np.linalg.inv(np.asarray(template_to_t1w, float)) @ img.affine
    mask = ndimage.affine_transform(np.asarray(template_mask.dataobj, np.float32), to_template[:3, :3],
                                    offset=to_template[:3, 3], output_shape=data.shape, order=1) > 0.5
    radius = np.maximum(1, np.round(margin_mm / _zooms(img))).astype(int)
    mask = ndimage.binary_dilation(mask, np.ones(2 * radius + 1, bool))
    return _image(np.where(mask, data, 0), img.affine)


def sample_shift(name, rng, zooms=(1.0, 1.0, 1.0)):
    """Parameters of shift ``name`` drawn from SHIFT_RANGES with ``rng`` (a numpy Generator);
    resolution needs the scan's voxel sizes ``zooms`` (an anisotropic draw coarsens one axis
    and keeps the others); skull stripping takes its parameters from the caller (a registration)."""
    ranges = SHIFT_RANGES.get(name)
    if name == "resolution":
        if rng.random() < ranges["p_anisotropic"]:
            axis = int(rng.integers(0, 3))
            voxel = [round(float(z), 3) for z in zooms]
            voxel[axis] = round(max(float(rng.uniform(*ranges["slice_mm"])), voxel[axis]), 3)
            return {"voxel_mm": voxel}
        return {"voxel_mm": round(float(rng.uniform(*ranges["isotropic_mm"])), 3)}
    if name == "contrast":
        return {k: round(float(rng.uniform(*ranges[k])), 3) for k in ("gm_ratio", "csf_ratio")}
    if name == "field_strength":
        return {"sigma": round(float(rng.uniform(*ranges["sigma"])), 4), "seed": int(rng.integers(2 ** 31))}
    if name == "atrophy":
        return {"width_mm": round(float(rng.uniform(*ranges["width_mm"])), 2)}
    if name == "field_of_view":
        if rng.random() < 0.5:
            return {"pad_fraction": round(float(rng.uniform(*ranges["pad_fraction"])), 3)}
        return {"margin_voxels": int(rng.integers(ranges["margin_voxels"][0], ranges["margin_voxels"][1] + 1))}
    if name == "intensity":
        low, high = np.log(ranges["scale"])
        return {"scale": round(float(np.exp(rng.uniform(low, high))), 4), "dtype": str(rng.choice(ranges["dtype"]))}
    raise ValueError(f"shift {name!r} has no sampler; choose from {', '.join(TRAINING_SHIFTS)}")


def sample_study(rng, zooms=(1.0, 1.0, 1.0), max_shifts=2):
    """A drawn study difference for a training volume: 1 to ``max_shifts`` distinct shifts of
    TRAINING_SHIFTS with their parameters, as [[name, params], ...] in application order."""
    n = int(rng.integers(1, max_shifts + 1))
    names = set(str(x) for x in rng.choice(TRAINING_SHIFTS, size=n, replace=False))
    return [[name, sample_shift(name, rng, zooms)] for name in TRAINING_SHIFTS if name in names]


def apply_study(img, shifts):
    """Apply a ``sample_study`` list of shifts to a nibabel image, in its order."""
    for name, params in shifts:
        img = apply_shift(img, name, params)
    return img


def apply_shift(img, name, params):
    """Apply shift ``name`` with ``params`` to a nibabel image."""
    functions = {"resolution": resample_voxels, "contrast": contrast, "field_strength": field_strength,
                 "atrophy": atrophy, "field_of_view": field_of_view, "intensity": intensity,
                 "skull_strip": skull_strip}
    if name not in functions:
        raise ValueError(f"unknown shift {name!r}; choose from {', '.join(SHIFTS)}")
    return functions[name](img, **params)
