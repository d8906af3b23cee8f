"""Resample a registered T1w onto the model's input grid, mask it, normalise it."""

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from .register import _LPS, to_sitk


def resample_to_grid(t1w_img, template_to_t1w, grid_shape, grid_affine, fwhm_mm=None):
    """Resample ``t1w_img`` onto a template-space grid; returns (grid_shape) float32.

    ``template_to_t1w`` (4x4, RAS mm) maps template world to image world. The image is
    Gaussian-smoothed first to an effective resolution of ``fwhm_mm`` (default: the grid
    spacing, full anti-aliasing), so that every native resolution is low-passed alike.
    Voxels already coarser than ``fwhm_mm`` are left as they are along that axis.
    """
    moving = to_sitk(t1w_img)
    spacing = np.array(moving.GetSpacing())
    if fwhm_mm is None:
        target = float(np.mean(np.sqrt((np.asarray(grid_affine)[:3, :3] ** 2).sum(axis=0))))
    else:
        target = float(fwhm_mm)
    sigma = np.sqrt(np.maximum(target ** 2 - spacing ** 2, 0)) / 2.355
    if sigma.max() > 0:
        moving = sitk.SmoothingRecursiveGaussian(moving, [float(max(s, 1e-3)) for s in sigma])
    reference = to_sitk(nib.Nifti1Image(np.zeros(grid_shape, np.float32), np.asarray(grid_affine)))
    lps = _LPS @ np.asarray(template_to_t1w) @ _LPS
    transform = sitk.AffineTransform(lps[:3, :3].ravel().tolist(), lps[:3, 3].tolist())
    out = sitk.Resample(moving, reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0).astype(np.float32)


def scale_intensity(volume, mask):
    """Divide by the 99th percentile inside ``mask`` and clip negatives: a contrast-free cache form."""
    inside = volume[mask]
    scale = float(np.percentile(inside, 99)) if inside.size else 0.0
    if not np.isfinite(scale) or scale <= 0:
        scale = float(np.abs(volume).max()) or 1.0
    out = np.clip(volume / scale, 0, None).astype(np.float32)
    out[~mask] = 0
    return out


def zscore(volume, mask):
    """Z-score inside ``mask`` (mean 0, sd 1), zero outside; (grid) float32."""
    inside = volume[mask].astype(np.float64)
    std = inside.std()
    out = np.zeros(volume.shape, np.float32)
    out[mask] = ((inside - inside.mean()) / (std if std > 0 else 1.0)).astype(np.float32)
    return out


def registration_quality(volume, template_volume, mask):
    """Normalised cross-correlation of the registered image and the template inside ``mask`` (-1..1)."""
    a = volume[mask].astype(np.float64)
    b = template_volume[mask].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0
