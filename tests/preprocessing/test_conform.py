"""conform: checks, 4D handling, RAS reorientation, on tiny synthetic and real images."""

import nibabel as nib
import numpy as np
import pytest

from bidsqc.preprocessing.conform import ConformError, conform, load_image


def _img(shape, affine=None, value=None):
    data = np.random.default_rng(0).random(shape).astype(np.float32) if value is None else np.full(shape, value,
                                                                                                     np.float32)
    return nib.Nifti1Image(data, np.eye(4) if affine is None else affine)


def test_real_scan_is_reoriented_to_ras(raw_head_t1w):
    img = load_image(raw_head_t1w)
    ras, info = conform(img, name=raw_head_t1w.name)
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    assert ras.get_data_dtype() == np.float32
    assert info.dims == tuple(img.shape[:3])
    assert info.as_dict()["voxel_size_mm"] == "1x1x1"
    # world coordinates of the centre voxel are unchanged by reorientation
    centre = np.array(img.shape[:3]) // 2
    world = img.affine @ np.r_[centre, 1]
    ras_vox = np.linalg.inv(ras.affine) @ world
    assert np.allclose(np.asarray(ras.dataobj)[tuple(np.round(ras_vox[:3]).astype(int))],
                       np.asarray(img.dataobj)[tuple(centre)])


def test_flipped_axes_come_back_as_ras():
    affine = np.diag([-2.0, 2.0, -2.0, 1.0])
    ras, info = conform(_img((10, 12, 14), affine))
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    assert info.voxel_size_mm == (2.0, 2.0, 2.0)


def test_4d_uses_first_volume_with_warning():
    data = np.stack([np.full((10, 10, 10), v, np.float32) for v in (1.0, 2.0, 3.0)], axis=-1)
    data[0, 0, 0, :] = 0
    ras, info = conform(nib.Nifti1Image(data, np.eye(4)), name="sub-03_T1w.nii.gz")
    assert info.n_volumes == 3
    assert "4D image with 3 volumes; rating volume 0 only" in info.warnings[0]
    assert np.asarray(ras.dataobj).max() == 1.0


@pytest.mark.parametrize("shape,fragment", [((64, 64), "2D image"), ((64, 64, 1), "2D image")])
def test_2d_images_are_refused(shape, fragment):
    with pytest.raises(ConformError, match=fragment):
        conform(_img(shape), name="x_T1w.nii.gz")


def test_all_zero_and_non_finite_are_refused():
    with pytest.raises(ConformError, match="all voxels are zero"):
        conform(_img((10, 10, 10), value=0.0), name="z_T1w.nii.gz")
    bad = _img((10, 10, 10))
    bad.dataobj[2, 2, 2] = np.nan
    with pytest.raises(ConformError, match="1 non-finite voxels"):
        conform(bad, name="n_T1w.nii.gz")


def test_unreadable_file_names_the_file(tmp_path):
    path = tmp_path / "sub-09_T1w.nii.gz"
    path.write_bytes(b"not a nifti")
    with pytest.raises(ConformError, match="sub-09_T1w.nii.gz: cannot read image"):
        load_image(path)


def test_thick_slices_are_warned_as_2d():
    data = np.zeros((40, 40, 12), np.float32)
    data[10:30, 10:30, 3:9] = 1.0
    _, thick = conform(nib.Nifti1Image(data, np.diag([1.0, 1.0, 4.8, 1.0])), name="sub-04_T1w.nii.gz")
    assert any("4.8 mm voxels along axis 2: likely a 2D" in w for w in thick.warnings), thick.warnings
    _, iso = conform(nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0])), name="sub-05_T1w.nii.gz")
    assert iso.warnings == []
