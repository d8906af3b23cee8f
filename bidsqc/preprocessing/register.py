"""Affine registration of a T1w image to a template with SimpleITK (ITK's registration framework).

Images cross between nibabel (RAS+) and SimpleITK (LPS+) here only. The returned
4x4 matrix maps template world coordinates (mm, RAS) to image world coordinates
(mm, RAS), which is what resampling onto the template grid needs.
"""

import threading

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

STRIPPED_MAX_ML = 2600.0
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
# SimpleITK's default thread count is process-wide: registrations from several threads
# (a threaded Nipype plugin, dask) take turns, so none restores another's setting mid-run
_THREADS_LOCK = threading.Lock()


def to_sitk(img, dtype=np.float32):
    """nibabel image -> SimpleITK image with the same physical space."""
    data = np.asarray(img.dataobj, dtype=dtype)
    out = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    affine = _LPS @ img.affine
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    out.SetSpacing(tuple(float(z) for z in zooms))
    out.SetOrigin(tuple(float(o) for o in affine[:3, 3]))
    out.SetDirection(tuple(float(d) for d in (affine[:3, :3] / zooms).ravel()))
    return out


def _downsample(image, spacing_mm):
    """Smooth (anti-alias) and resample a SimpleITK image to isotropic ``spacing_mm``."""
    spacing = np.array(image.GetSpacing())
    sigma = np.sqrt(np.maximum(spacing_mm ** 2 - spacing ** 2, 0)) / 2.355
    if sigma.max() > 0:
        image = sitk.SmoothingRecursiveGaussian(image, [float(max(s, 1e-3)) for s in sigma])
    size = np.ceil(np.array(image.GetSize()) * spacing / spacing_mm).astype(int)
    return sitk.Resample(image, [int(s) for s in size], sitk.Transform(), sitk.sitkLinear,
                         image.GetOrigin(), [float(spacing_mm)] * 3, image.GetDirection(), 0.0,
                         sitk.sitkFloat32)


def _foreground_mask(image):
    """Rough head/brain mask of a low-resolution SimpleITK image (Otsu on the smoothed image)."""
    arr = sitk.GetArrayFromImage(image)
    positive = arr[arr > 0]
    if positive.size == 0:
        return None
    thr = np.percentile(positive, 2) if positive.size < arr.size * 0.5 else 0
    mask = arr > max(thr, 0)
    mask = ndimage.binary_opening(mask, iterations=1)
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(image)
    return out


def _affine_matrix(transform):
    """SimpleITK affine (fixed LPS -> moving LPS) -> 4x4 (fixed RAS -> moving RAS)."""
    matrix = np.eye(4)
    a = np.array(transform.GetMatrix()).reshape(3, 3)
    center = np.array(transform.GetCenter())
    translation = np.array(transform.GetTranslation())
    matrix[:3, :3] = a
    matrix[:3, 3] = translation + center - a @ center
    return _LPS @ matrix @ _LPS


def _run_stage(fixed, moving, transform, n_iter, fixed_mask, moving_mask, seed):
    """One multi-resolution (8, 4 mm) Mattes-MI stage; updates ``transform``; returns the metric."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.3, seed)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        reg.SetMetricMovingMask(moving_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=int(n_iter),
                                                 relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(transform, inPlace=True)
    reg.Execute(fixed, moving)
    return float(reg.GetMetricValue())


def _foreground_ml(mask, spacing_mm):
    return float(sitk.GetArrayViewFromImage(mask).sum()) * spacing_mm ** 3 / 1000 if mask is not None else 0.0


def register_affine(t1w_img, template, spacing_mm=4.0, iterations=(200, 100), seed=1):
    """Single-threaded (see ``_register_affine``): ITK's multi-threaded metric sums in a
    varying order, which made the transform, and p_bad by up to 0.05, differ from run to
    run on the same scan; one thread makes a scan's rating reproducible.

    The thread count is set through SimpleITK's process-wide default (the training cache
    was built that way; setting it on the registration method alone moves transforms by
    up to 2e-4 mm). Calls from several threads are serialised by a lock; other SimpleITK
    code running in another thread during a registration also runs single-threaded."""
    with _THREADS_LOCK:
        threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        try:
            return _register_affine(t1w_img, template, spacing_mm, iterations, seed)
        finally:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _register_affine(t1w_img, template, spacing_mm, iterations, seed):
    """Register ``t1w_img`` (RAS nibabel image) to ``template`` (bidsqc Template); return (4x4, info).

    Stage 1 (similarity) aligns a head to the whole-head template, or a skull-stripped
    brain to the template brain; where the template itself has no skull (nilearn's
    fallback), a head is aligned to the template brain from several starting heights
    (a head's centre of mass lies below its brain's) and the best start is kept.
    Stage 2 (12-dof affine) aligns to the template brain, Mattes mutual information
    inside the dilated template brain mask. Both at 8 then 4 mm; ``seed`` makes the
    metric sampling repeatable.
    """
    brain = np.asarray(template.mask.dataobj) > 0.5
    t1w = np.asarray(template.t1w.dataobj, dtype=np.float32)
    fixed_brain = _downsample(to_sitk(nib.Nifti1Image(t1w * brain, template.t1w.affine)), spacing_mm)
    fixed_head = _downsample(to_sitk(template.t1w), spacing_mm)
    moving = _downsample(to_sitk(t1w_img), spacing_mm)
    dilated = ndimage.binary_dilation(brain, iterations=5)
    fixed_mask = to_sitk(nib.Nifti1Image(dilated.astype(np.uint8), template.mask.affine), dtype=np.uint8)
    fixed_mask = sitk.Resample(fixed_mask, fixed_brain, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                               sitk.sitkUInt8)
    moving_mask = _foreground_mask(moving)
    foreground_ml = _foreground_ml(moving_mask, spacing_mm)
    stripped = foreground_ml < STRIPPED_MAX_ML
    template_has_skull = _foreground_ml(_foreground_mask(fixed_head), spacing_mm) >= STRIPPED_MAX_ML

    if stripped or template_has_skull:
        first_fixed, first_mask = (fixed_brain, fixed_mask) if stripped else (fixed_head, None)
        starts = [0.0]
    else:
        first_fixed, first_mask = fixed_brain, fixed_mask
        starts = [0.0, 15.0, 30.0]
    best = None
    for dz in starts:
        init = sitk.CenteredTransformInitializer(first_fixed, moving, sitk.Similarity3DTransform(),
                                                 sitk.CenteredTransformInitializerFilter.MOMENTS)
        candidate = sitk.Similarity3DTransform(init)
        candidate.SetTranslation(tuple(np.array(candidate.GetTranslation()) + [0.0, 0.0, dz]))
        metric = _run_stage(first_fixed, moving, candidate, iterations[0], first_mask, moving_mask, seed)
        if best is None or metric < best[0]:
            best = (metric, candidate)
    similarity = best[1]
    affine = sitk.AffineTransform(3)
    affine.SetCenter(similarity.GetCenter())
    affine.SetMatrix(similarity.GetMatrix())
    affine.SetTranslation(similarity.GetTranslation())
    final_metric = _run_stage(fixed_brain, moving, affine, iterations[1], fixed_mask, moving_mask, seed)
    matrix = _affine_matrix(affine)
    return matrix, {"mattes_mi": final_metric, "foreground_ml": round(foreground_ml, 1),
                    "skull_stripped": bool(stripped)}


def write_itk_affine(matrix, path):
    """Write a 4x4 (template RAS -> image RAS) matrix as an ITK text transform (LPS), the
    form ANTs/antsApplyTransforms and fMRIPrep use for ``_xfm.txt`` files."""
    lps = _LPS @ np.asarray(matrix) @ _LPS
    transform = sitk.AffineTransform(lps[:3, :3].ravel().tolist(), lps[:3, 3].tolist())
    tmp = f"{path}.tmp.txt"
    sitk.WriteTransform(transform, tmp)
    import os

    os.replace(tmp, path)


def read_itk_affine(path):
    """Read an ITK text affine back as a 4x4 (template RAS -> image RAS) matrix."""
    transform = sitk.ReadTransform(str(path))
    if transform.GetName() == "CompositeTransform":
        transform = sitk.CompositeTransform(transform).GetNthTransform(0)
    return _affine_matrix(sitk.AffineTransform(transform))
