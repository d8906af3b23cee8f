"""Load a T1w file and bring it into a checked, RAS-oriented 3D float32 image."""

import logging
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np

LOGGER = logging.getLogger("bidsqc")


THICK_SLICE_MM = 3.5  # coarser voxels than this along any axis: warned as a likely 2D acquisition
#: the largest image read (voxels of the 3D volume rated): a header that claims more is an error row,
#: before any memory is asked for; BIDSQC_MAX_VOXELS overrides it (a 0.5 mm whole-head scan has 1e8)
MAX_VOXELS = 512 ** 3


#: voxels finer than this are averaged in blocks while the image is read (a 0.5 mm scan is read at
#: 1 mm): the network sees 2.5 mm and the native scores were calibrated on 0.8-1.2 mm scans, and
#: the memory and time of everything after reading then grow with the 1 mm voxel count
FINEST_MM = 1.0


def read_factors(zooms):
    """Per axis, the block size that brings voxels finer than 2/3 of FINEST_MM to about FINEST_MM (1 elsewhere)."""
    return tuple(max(1, int(round(FINEST_MM / z))) if z > 0 else 1 for z in zooms)


def _read_block_means(img, factors):
    """The image's voxels as float32 block means of ``factors`` voxels, read slab by slab along
    the last axis: the stored integers are held once, scaled a slab at a time, never as float64."""
    proxy = img.dataobj
    raw = proxy.get_unscaled() if hasattr(proxy, "get_unscaled") else np.asanyarray(proxy)
    slope = float(getattr(proxy, "slope", 1.0) or 1.0)
    inter = float(getattr(proxy, "inter", 0.0) or 0.0)
    shape = tuple(n // f for n, f in zip(raw.shape[:3], factors))
    out = np.empty(shape, np.float32)
    fx, fy, fz = factors
    for k in range(shape[2]):
        slab = np.asarray(raw[:shape[0] * fx, :shape[1] * fy, k * fz:(k + 1) * fz], np.float32)
        slab = slab.reshape(shape[0], fx, shape[1], fy, fz).mean(axis=(1, 3, 4))
        out[..., k] = slab * slope + inter
    return out


def max_voxels():
    import os

    try:
        return int(os.environ.get("BIDSQC_MAX_VOXELS", MAX_VOXELS))
    except ValueError:
        return MAX_VOXELS


class ConformError(ValueError):
    """The image cannot be quality-controlled (2D, empty, all-zero, non-finite, unreadable)."""


@dataclass
class ConformInfo:
    """What conform recorded about the input image."""

    voxel_size_mm: tuple
    dims: tuple
    oblique: bool
    n_volumes: int = 1
    warnings: list = field(default_factory=list)
    orientation: str = ""

    def as_dict(self):
        return {
            "voxel_size_mm": "x".join(f"{v:.3g}" for v in self.voxel_size_mm),
            "dims": "x".join(str(int(d)) for d in self.dims),
            "oblique": bool(self.oblique),
            "n_volumes": int(self.n_volumes),
            "warnings": list(self.warnings),
            "orientation": self.orientation,
        }


def load_image(t1w_file):
    """Load a NIfTI file; any read failure becomes a one-line ConformError naming the file."""
    import os

    try:
        os.stat(t1w_file)  # a symbolic link that loops or leads nowhere, a file gone: say which
    except OSError as exc:
        what = ("a symbolic link to a missing file" if os.path.islink(t1w_file) and exc.errno == 2
                else exc.strerror or type(exc).__name__)
        raise ConformError(f"{t1w_file}: cannot read image ({what})") from exc
    try:
        img = nib.load(str(t1w_file))
        # Touch the header shape so that truncated headers fail here, not later.
        _ = img.shape
        return img
    except Exception as exc:  # nibabel raises many exception types for broken files
        raise ConformError(f"{t1w_file}: cannot read image ({exc.__class__.__name__}: {exc})") from exc


def conform(img, name="image", volume=0):
    """Return (RAS-oriented 3D float32 image, ConformInfo).

    4D input uses ``volume`` (the first by default) with a warning. 2D, empty,
    all-zero and non-finite images raise ConformError with a message naming ``name``.
    """
    shape = img.shape
    warnings = []
    n_volumes = 1
    dtype = img.get_data_dtype()
    if dtype.names:  # a structured type: RGB24 or RGBA32
        raise ConformError(f"{name}: {'RGBA' if len(dtype.names) == 4 else 'RGB'} colour image; bidsqc rates "
                           "single-channel (grey-level) T1w images: export the scan as grey levels")
    if len(shape) >= 3 and int(np.prod(shape[:3], dtype=np.float64)) > max_voxels():
        n = int(np.prod(shape[:3], dtype=np.float64))
        raise ConformError(f"{name}: the header claims {'x'.join(str(d) for d in shape[:3])} voxels "
                           f"({n:.3g} voxels, {n * 4 / 2 ** 30:.3g} GiB as float32), more than the limit of "
                           f"{max_voxels():.3g}; a damaged header, or a scan larger than bidsqc reads (raise the "
                           "limit with the environment variable BIDSQC_MAX_VOXELS)")
    if len(shape) < 3:
        raise ConformError(f"{name}: {len(shape)}D image with shape {shape}; a 3D T1w volume is needed")
    if len(shape) > 3:
        extra = int(np.prod(shape[3:]))
        n_volumes = extra
        if extra > 1:
            msg = (f"{name}: 4D image with {extra} volumes; rating volume {volume} only (to rate the others, "
                   "split the file into 3D images, e.g. with fslsplit or nibabel, and rate those)")
            LOGGER.warning(msg)
            warnings.append(msg)
        if volume >= extra:
            raise ConformError(f"{name}: volume {volume} requested but the image has {extra}")
        img = img.slicer[..., volume] if len(shape) == 4 else nib.Nifti1Image(
            np.asanyarray(img.dataobj).reshape(shape[:3] + (extra,))[..., volume], img.affine, img.header)
    dims = tuple(int(d) for d in img.shape[:3])
    if min(dims) < 2:
        raise ConformError(f"{name}: 2D image with shape {dims}; a 3D T1w volume is needed")
    if min(dims) < 8:
        raise ConformError(f"{name}: only {min(dims)} voxels along one axis (shape {dims}); a 3D T1w volume is needed")
    affine = img.affine
    factors = read_factors(np.sqrt((affine[:3, :3] ** 2).sum(axis=0))) if np.all(np.isfinite(affine)) else (1, 1, 1)
    try:
        if max(factors) > 1 and len(img.shape) == 3:
            data = _read_block_means(img, factors)
            step = np.diag(list(factors) + [1.0])
            step[:3, 3] = (np.asarray(factors) - 1) / 2.0  # each block's centre
            affine = affine @ step
            msg = (f"{name}: voxels of {'x'.join(f'{z:.3g}' for z in np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0)))}"
                   f" mm read as means of {'x'.join(str(f) for f in factors)} blocks (about {FINEST_MM:g} mm)")
            LOGGER.info(msg)
            warnings.append(msg)
        else:
            data = np.asanyarray(img.dataobj, dtype=np.float32)
    except Exception as exc:
        raise ConformError(f"{name}: cannot read voxel data ({exc.__class__.__name__}: {exc})") from exc
    if data.size == 0:
        raise ConformError(f"{name}: empty image")
    finite = np.isfinite(data)
    if not finite.all():
        raise ConformError(f"{name}: {int((~finite).sum())} non-finite voxels (NaN or Inf); fix or re-export the image")
    if not np.any(data):
        raise ConformError(f"{name}: all voxels are zero")
    if float(data.max() - data.min()) <= 0:
        raise ConformError(f"{name}: constant image (every voxel is {data.flat[0]:g})")
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise ConformError(f"{name}: invalid affine (singular or non-finite voxel-to-world matrix)")
    zooms = tuple(float(z) for z in np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0)))  # as acquired
    oblique = bool(nib.affines.obliquity(affine).max() > 1e-3)
    if max(zooms) > THICK_SLICE_MM:
        msg = (f"{name}: {max(zooms):.3g} mm voxels along axis {int(np.argmax(zooms))}: likely a 2D "
               "(thick-slice) acquisition; the model rates it on a 2.5 mm grid and does not judge "
               "its through-plane resolution, which is too coarse for most morphometry")
        LOGGER.warning(msg)
        warnings.append(msg)
    hdr = nib.Nifti1Header()
    hdr.set_xyzt_units("mm")
    native = nib.Nifti1Image(data, affine, hdr)
    ras = nib.as_closest_canonical(native)
    ras = nib.Nifti1Image(np.asarray(ras.dataobj, dtype=np.float32), ras.affine, hdr)
    return ras, ConformInfo(voxel_size_mm=zooms, dims=dims, oblique=oblique, n_volumes=n_volumes,
                            warnings=warnings, orientation="".join(nib.aff2axcodes(affine)))
