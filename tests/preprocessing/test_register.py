"""Affine registration and resampling onto the model grid, on real scans."""

import nibabel as nib
import numpy as np
import pytest

from bidsqc.preprocessing.conform import load_image
from bidsqc.preprocessing.pipeline import (DEFAULT_SHAPE, PRESMOOTH_FWHM_MM, make_grid, make_input_mask,
                                           preprocess)
from bidsqc.preprocessing.register import read_itk_affine, register_affine, write_itk_affine
from bidsqc.preprocessing.resample import resample_to_grid, zscore


def test_recovers_a_known_shift_and_rotation(nlin6):
    """The template moved by a known rigid transform is registered back to within 2 mm."""
    theta = np.deg2rad(6)
    motion = np.eye(4)
    motion[:3, :3] = [[1, 0, 0], [0, np.cos(theta), -np.sin(theta)], [0, np.sin(theta), np.cos(theta)]]
    motion[:3, 3] = [4.0, -6.0, 8.0]
    moved = nib.Nifti1Image(np.asarray(nlin6.t1w.dataobj, np.float32), motion @ nlin6.t1w.affine)
    matrix, info = register_affine(moved, nlin6)
    assert not info["skull_stripped"]
    # template world -> image world must be the motion itself
    corners = np.array([[x, y, z, 1] for x in (-60, 60) for y in (-80, 50) for z in (-40, 60)]).T
    error = np.linalg.norm((matrix @ corners - motion @ corners)[:3], axis=0)
    assert error.max() < 2.0, error


@pytest.mark.parametrize("which", ["stripped", "raw_head"])
def test_real_scans_align_to_the_template_brain(which, nlin6, stripped_t1w, raw_head_t1w):
    path = stripped_t1w if which == "stripped" else raw_head_t1w
    grid = make_grid(nlin6)
    mask = make_input_mask(nlin6, DEFAULT_SHAPE, grid)
    volume, info = preprocess(load_image(path), nlin6, DEFAULT_SHAPE, grid, mask, name=path.name)
    assert volume.shape == DEFAULT_SHAPE and volume.dtype == np.float32
    assert info["skull_stripped"] == (which == "stripped")
    # measured 0.64 (stripped) and 0.41 (raw head) on the 2.5 mm grid; a failed
    # registration gives < 0.2
    assert info["reg_quality"] > 0.35
    assert np.all(volume[~mask] == 0)
    z = zscore(volume, mask)
    assert abs(z[mask].mean()) < 1e-4 and abs(z[mask].std() - 1) < 1e-3


def test_itk_affine_round_trip(tmp_path):
    matrix = np.eye(4)
    matrix[:3, :3] = [[1.05, 0.02, 0], [-0.01, 0.97, 0.03], [0, 0.01, 1.1]]
    matrix[:3, 3] = [3.0, -2.0, 12.5]
    path = tmp_path / "from-T1w_to-MNI_mode-image_xfm.txt"
    write_itk_affine(matrix, path)
    assert "AffineTransform_double_3_3" in path.read_text()
    assert np.allclose(read_itk_affine(path), matrix, atol=1e-6)


def test_model_grid_holds_the_template_brain(nlin6):
    """At least 99.9% of the template brain voxels fall inside the 2.5 mm model grid
    (measured: all but 0.01%, the lowest brainstem below z = -69 mm)."""
    grid = make_grid(nlin6)
    brain = np.asarray(nlin6.mask.dataobj) > 0.5
    world = nib.affines.apply_affine(nlin6.mask.affine, np.argwhere(brain))
    vox = nib.affines.apply_affine(np.linalg.inv(grid), world)
    inside = np.all((vox > -0.5) & (vox < np.array(DEFAULT_SHAPE) - 0.5), axis=1)
    assert inside.mean() > 0.999
    mask = make_input_mask(nlin6, DEFAULT_SHAPE, grid)
    assert 0.3 < mask.mean() < 0.6


def test_registration_is_reproducible(nlin6, stripped_t1w):
    """The same scan gives bit-identical transforms (and so the same rating) run after run."""
    from bidsqc.preprocessing.conform import conform

    ras, _ = conform(load_image(stripped_t1w))
    first, _ = register_affine(ras, nlin6)
    second, _ = register_affine(ras, nlin6)
    assert np.array_equal(first, second)


def test_presmoothing_keeps_the_fine_texture_that_artifacts_leave():
    """Noise survives onto the 2.5 mm grid when the image is smoothed only to
    PRESMOOTH_FWHM_MM; full anti-aliasing (to the grid spacing) averages most of it away."""
    rng = np.random.default_rng(0)
    data = (100 + 10 * rng.standard_normal((120, 120, 120))).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.0, 1.0]))
    grid = np.diag([2.5, 2.5, 2.5, 1.0])
    grid[:3, 3] = 20.0
    light = resample_to_grid(img, np.eye(4), (24, 24, 24), grid, fwhm_mm=PRESMOOTH_FWHM_MM)
    full = resample_to_grid(img, np.eye(4), (24, 24, 24), grid)
    assert abs(light.mean() - 100) < 1 and abs(full.mean() - 100) < 1
    assert light.std() > 1.5 * full.std()
    assert light.std() > 2.0  # a tenth of the native noise (sd 10) at least is left


def test_registrations_from_threads_match_and_restore_the_thread_setting(nlin6, stripped_t1w):
    """Registrations run from several threads (a threaded Nipype plugin) give the same
    transform as one run alone, and SimpleITK's process-wide thread count is restored."""
    import threading

    import SimpleITK as sitk

    from bidsqc.preprocessing.conform import conform

    ras, _ = conform(load_image(stripped_t1w))
    alone, _ = register_affine(ras, nlin6)
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    results = [None] * 3

    def run(i):
        results[i] = register_affine(ras, nlin6)[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(r, alone) for r in results)
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == before
