"""Study shifts (bidsqc.artifacts.shift): each is deterministic for its parameters and seed
and keeps a clean scan clean by construction: the head stays in place, tissue keeps its
order and contrast, atrophy widens CSF only."""

import nibabel as nib
import numpy as np
import pytest

from bidsqc.artifacts.shift import (SHIFT_RANGES, TRAINING_SHIFTS, apply_shift, apply_study, atrophy, contrast,
                                    field_of_view, field_strength, intensity, resample_voxels, sample_shift,
                                    sample_study, skull_strip, tissue_levels)


@pytest.fixture(scope="module")
def scan(stripped_t1w_2mm):
    return nib.load(stripped_t1w_2mm)


def _world_centre(img):
    data = np.asarray(img.dataobj, np.float64)
    ijk = np.array(np.nonzero(data > 0.1 * data.max()), np.float64)
    weights = data[data > 0.1 * data.max()]
    centre = (ijk * weights).sum(axis=1) / weights.sum()
    return img.affine[:3, :3] @ centre + img.affine[:3, 3]


@pytest.mark.parametrize("voxel_mm", [3.0, [2.0, 2.0, 4.5]])
def test_resampling_keeps_the_head_in_place(scan, voxel_mm):
    out = resample_voxels(scan, voxel_mm)
    assert np.allclose(out.header.get_zooms()[:3], np.broadcast_to(voxel_mm, (3,)), atol=1e-3)
    assert np.linalg.norm(_world_centre(out) - _world_centre(scan)) < 1.0
    again = resample_voxels(scan, voxel_mm)
    assert np.array_equal(np.asarray(out.dataobj), np.asarray(again.dataobj))
    # the brain keeps its intensities (a coarser grid only averages them)
    wm = tissue_levels(np.asarray(scan.dataobj, np.float32))[2]
    assert tissue_levels(np.asarray(out.dataobj, np.float32))[2] == pytest.approx(wm, rel=0.1)


def test_contrast_moves_grey_matter_and_csf_but_keeps_white_matter_and_the_order(scan):
    data = np.asarray(scan.dataobj, np.float32)
    csf, gm, wm = tissue_levels(data)
    out = np.asarray(contrast(scan, gm_ratio=0.9, csf_ratio=1.4).dataobj, np.float32)
    # grey matter and CSF move to their ratios, white matter stays
    for level, ratio in ((gm, 0.9), (csf, 1.4), (wm, 1.0)):
        near = np.abs(data - level) < 0.01 * level
        assert np.median(out[near]) == pytest.approx(ratio * level, rel=0.02)
    inside = data > 0
    order = np.argsort(data[inside][::97], kind="stable")
    assert np.all(np.diff(out[inside][::97][order]) >= -1e-3)  # monotone: tissue order kept
    assert np.median(out[data >= wm]) == pytest.approx(np.median(data[data >= wm]), rel=0.01)


def test_field_strength_noise_is_seeded_and_raises_the_noise(scan):
    from bidsqc.scores import noise_score

    data = np.asarray(scan.dataobj, np.float32)
    a = np.asarray(field_strength(scan, sigma=0.04, seed=3).dataobj)
    assert np.array_equal(a, np.asarray(field_strength(scan, sigma=0.04, seed=3).dataobj))
    assert not np.array_equal(a, np.asarray(field_strength(scan, sigma=0.04, seed=4).dataobj))
    assert noise_score(a) > noise_score(data) + 0.01


def test_atrophy_widens_csf_and_keeps_the_tissue_left(scan):
    data = np.asarray(scan.dataobj, np.float32)
    csf, gm, _ = tissue_levels(data)
    out = np.asarray(atrophy(scan, width_mm=2.0).dataobj, np.float32)
    assert np.array_equal(out, np.asarray(atrophy(scan, width_mm=2.0).dataobj))
    threshold = 0.5 * (csf + gm)
    brain = data > 0
    assert ((out < threshold) & brain).sum() > 1.1 * ((data < threshold) & brain).sum()
    kept = out == data
    assert kept.sum() > 0.5 * brain.sum()
    changed = out != data
    assert np.allclose(out[changed], csf)  # what is lost becomes CSF, nothing brighter


def test_field_of_view_pads_or_crops_without_moving_the_head(scan):
    for params in ({"pad_fraction": 0.2}, {"margin_voxels": 2}):
        out = field_of_view(scan, **params)
        assert np.linalg.norm(_world_centre(out) - _world_centre(scan)) < 1e-3
        assert np.asarray(out.dataobj).sum() == pytest.approx(np.asarray(scan.dataobj, np.float32).sum(), rel=1e-4)
    padded, tight = field_of_view(scan, pad_fraction=0.2), field_of_view(scan, margin_voxels=2)
    assert padded.shape[0] > scan.shape[0] > tight.shape[0]


def test_intensity_changes_scale_and_datatype_only(scan):
    data = np.asarray(scan.dataobj, np.float32)
    out = intensity(scan, scale=0.01, dtype="uint8")
    assert out.get_data_dtype() == np.uint8 and np.asarray(out.dataobj).max() == 255
    values = np.asarray(out.dataobj, np.float32)
    assert np.corrcoef(values[data > 0], data[data > 0])[0, 1] > 0.999
    for scale in (40.0, 0.01):  # beyond int16, and a range that would round to a few levels: a slope
        stored = nib.Nifti1Image.from_bytes(intensity(scan, scale=scale, dtype="int16").to_bytes())
        assert stored.get_data_dtype() == np.int16
        values = np.asarray(stored.dataobj, np.float32)
        assert values.max() == pytest.approx(scale * data.max(), rel=1e-3)
        assert np.abs(values - scale * data).max() <= 1e-3 * scale * data.max()


def test_skull_strip_zeroes_outside_the_registered_template_brain(raw_head_t1w, nlin6):
    from bidsqc.preprocessing.conform import conform, load_image
    from bidsqc.preprocessing.register import register_affine

    img, _ = conform(load_image(raw_head_t1w))
    img = resample_voxels(img, 2.0)
    matrix, _ = register_affine(img, nlin6)
    out = np.asarray(skull_strip(img, matrix, nlin6.mask).dataobj)
    data = np.asarray(img.dataobj)
    assert 0.1 * (data > 0).sum() < (out > 0).sum() < 0.7 * (data > 0).sum()
    assert np.array_equal(out[out > 0], data[out > 0])


def test_samplers_are_seeded_and_stay_in_their_ranges():
    for name in ("contrast", "field_strength", "atrophy", "field_of_view", "intensity"):
        draws = [sample_shift(name, np.random.default_rng(7)) for _ in range(2)]
        assert draws[0] == draws[1]
    rng = np.random.default_rng(0)
    for _ in range(50):
        c = sample_shift("contrast", rng)
        assert SHIFT_RANGES["contrast"]["gm_ratio"][0] <= c["gm_ratio"] <= SHIFT_RANGES["contrast"]["gm_ratio"][1]
        s = sample_shift("intensity", rng)
        assert SHIFT_RANGES["intensity"]["scale"][0] <= s["scale"] <= SHIFT_RANGES["intensity"]["scale"][1]
        assert s["dtype"] in SHIFT_RANGES["intensity"]["dtype"]
    with pytest.raises(ValueError, match="unknown shift"):
        apply_shift(None, "tilt", {})
    ranges = SHIFT_RANGES["resolution"]
    voxels = [sample_shift("resolution", rng, zooms=(1.0, 1.0, 1.2))["voxel_mm"] for _ in range(200)]
    iso = [v for v in voxels if not isinstance(v, list)]
    aniso = [v for v in voxels if isinstance(v, list)]
    assert all(ranges["isotropic_mm"][0] <= v <= ranges["isotropic_mm"][1] for v in iso)
    assert 0.2 < len(aniso) / len(voxels) < 0.4
    for v in aniso:  # one axis coarser, the others the scan's own
        assert sorted(v)[:2] in ([1.0, 1.0], [1.0, 1.2]) and max(v) >= ranges["slice_mm"][0]


def test_a_drawn_study_is_seeded_ordered_and_applied_in_order(scan):
    studies = [sample_study(np.random.default_rng(s)) for s in range(40)]
    assert studies == [sample_study(np.random.default_rng(s)) for s in range(40)]
    for study in studies:
        names = [name for name, _ in study]
        assert 1 <= len(names) <= 2 and names == [n for n in TRAINING_SHIFTS if n in names]
    assert {n for study in studies for n, _ in study} == set(TRAINING_SHIFTS)
    study = [["resolution", {"voxel_mm": 2.0}], ["field_of_view", {"pad_fraction": 0.1}]]
    out = apply_study(scan, study)
    expected = field_of_view(resample_voxels(scan, 2.0), pad_fraction=0.1)
    assert out.shape == expected.shape and np.allclose(out.affine, expected.affine)
    assert np.array_equal(np.asarray(out.dataobj), np.asarray(expected.dataobj))
