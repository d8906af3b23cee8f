"""The one preprocessing path shared by inference and training-set building.

native T1w -> conform (RAS, checks) -> affine registration to the template ->
resample onto the model grid -> mask with the model's input mask -> scale.
"""

import time

import nibabel as nib
import numpy as np
from scipy import ndimage

from .conform import conform
from .register import register_affine
from .resample import registration_quality, resample_to_grid, scale_intensity

DEFAULT_SPACING_MM = 2.5
DEFAULT_SHAPE = (64, 76, 64)
# The subject image is smoothed only to 1.25 mm FWHM before it is resampled onto the 2.5 mm
# grid, not to the grid spacing: full anti-aliasing leaves too little of the fine-grained
# noise, spike and ringing texture for the network to see (measured on a clean scan: noise
# residual on the grid 0.016 with full anti-aliasing, 0.029 with 1.25 mm). Recorded in the
# model card; an ensemble trained with another value refuses to load.
PRESMOOTH_FWHM_MM = 1.25


def make_grid(template, spacing_mm=DEFAULT_SPACING_MM, shape=DEFAULT_SHAPE):
    """A ``shape`` grid of ``spacing_mm`` voxels centred on the template brain; returns a 4x4 affine."""
    mask = np.asarray(template.mask.dataobj) > 0.5
    center_vox = np.array(ndimage.center_of_mass(mask))
    center_mm = template.mask.affine[:3, :3] @ center_vox + template.mask.affine[:3, 3]
    affine = np.diag([spacing_mm] * 3 + [1.0])
    affine[:3, 3] = np.round(center_mm - spacing_mm * (np.array(shape) - 1) / 2.0, 1)
    return affine


def make_input_mask(template, grid_shape, grid_affine, dilate_voxels=1):
    """Template brain mask on the model grid, dilated by ``dilate_voxels``: (grid) bool."""
    mask = resample_to_grid(nib.Nifti1Image(np.asarray(template.mask.dataobj, np.float32),
                                            template.mask.affine),
                            np.eye(4), grid_shape, grid_affine) > 0.5
    return ndimage.binary_dilation(mask, iterations=dilate_voxels) if dilate_voxels else mask


_TEMPLATE_ON_GRID = {}


def template_on_grid(template, grid_shape, grid_affine):
    """(template T1w, template brain mask) resampled onto the model grid, computed once per
    template and grid in a process (Nipype workers and dataset builders reuse it)."""
    key = (template.template_id, template.source, tuple(grid_shape), np.asarray(grid_affine).tobytes())
    if key not in _TEMPLATE_ON_GRID:
        t1w, brain = (resample_to_grid(nib.Nifti1Image(np.asarray(img.dataobj, np.float32), img.affine),
                                       np.eye(4), grid_shape, grid_affine)
                      for img in (template.t1w, template.mask))
        _TEMPLATE_ON_GRID[key] = (t1w, brain > 0.5)
    return _TEMPLATE_ON_GRID[key]


def to_model_grid(ras_img, template_to_t1w, template, grid_shape, grid_affine, input_mask):
    """Resample a conformed image onto the model grid, mask and scale it.

    The image is smoothed to ``PRESMOOTH_FWHM_MM`` before resampling.
    Returns (volume, reg_quality): volume is (grid_shape) float32 with the 99th
    percentile inside ``input_mask`` at 1 and zero outside; reg_quality is the
    normalised cross-correlation with the template inside the template brain mask.
    """
    resampled = resample_to_grid(ras_img, template_to_t1w, grid_shape, grid_affine, fwhm_mm=PRESMOOTH_FWHM_MM)
    template_t1w, brain = template_on_grid(template, grid_shape, grid_affine)
    quality = registration_quality(resampled, template_t1w, brain)
    return scale_intensity(resampled, input_mask), round(quality, 4)


def preprocess(img, template, grid_shape, grid_affine, input_mask, name="image", move=None):
    """Run conform -> register -> resample -> mask -> scale on a nibabel image.

    ``move`` (training only): a 4x4 template-space affine composed with the registration
    (template_to_t1w @ move), so that the scan lands moved on the grid in its one
    resampling, with no second interpolation (see ``bidsqc.training.geometry.grid_move``).
    Returns (volume, info): volume as from ``to_model_grid``; info records the conform
    fields, the template-to-T1w affine, registration figures and timings.
    """
    started = time.time()
    ras, conform_info = conform(img, name=name)
    template_to_t1w, reg_info = register_affine(ras, template)
    if move is not None:
        template_to_t1w = template_to_t1w @ np.asarray(move, float)
    volume, quality = to_model_grid(ras, template_to_t1w, template, grid_shape, grid_affine, input_mask)
    info = dict(conform_info.as_dict())
    info.update(reg_info)
    info["reg_quality"] = quality
    info["template_to_t1w"] = template_to_t1w.tolist()
    info["preprocess_s"] = round(time.time() - started, 2)
    return volume, info
