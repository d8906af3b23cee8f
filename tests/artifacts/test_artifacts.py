"""Artifact functions: deterministic for fixed parameters and change the image as expected;
samplers stay in their documented ranges."""

import json

import nibabel as nib
import numpy as np
import pytest

from bidsqc.artifacts import ARTIFACTS, SEVERITIES, apply_artifact, sample_params, simulate
from bidsqc.artifacts import simulators as sim


def phantom(shape=(40, 48, 36)):
    """A bright ellipsoid 'head' with an inner darker 'brain' structure, zero background."""
    grid = np.indices(shape).astype(np.float32)
    centre = (np.array(shape) - 1) / 2
    r = np.sqrt(sum(((grid[i] - centre[i]) / (0.35 * shape[i])) ** 2 for i in range(3)))
    data = np.where(r < 1, 100.0, 0.0).astype(np.float32)
    data[(r < 0.5)] = 60.0
    return data


def image(data=None):
    data = phantom() if data is None else data
    return nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.0, 1.0]))


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_deterministic_for_fixed_parameters(artifact):
    img = image()
    params = sample_params(artifact, "severe", np.random.default_rng(5), np.asarray(img.dataobj), (1, 1, 1))
    json.dumps(params)  # parameters are plain JSON values (they go into manifests)
    a = np.asarray(apply_artifact(img, artifact, params).dataobj)
    b = np.asarray(apply_artifact(img, artifact, params).dataobj)
    assert np.array_equal(a, b)
    assert not np.allclose(a, np.asarray(img.dataobj)[tuple(slice(0, s) for s in a.shape)])


def test_ghosting_puts_energy_at_the_half_fov_shift():
    data = np.zeros((32, 64, 32), np.float32)
    data[12:20, 24:40, 12:20] = 100  # object in the central half along axis 1
    out = sim.ghosting(data, axis=1, period=2, intensity=0.5)
    ghost_region = np.r_[0:16, 48:64]  # the object shifted by n/2 = 32 along axis 1
    ghost = out[12:20, ghost_region, 12:20].mean()
    elsewhere = out[0:8, :, 0:8].mean()
    assert ghost > 10 and ghost > 20 * max(elsewhere, 1e-3)
    assert np.array_equal(out, sim.ghosting(data, axis=1, period=2, intensity=0.5))


def test_wraparound_moves_signal_to_the_opposite_edge():
    data = np.zeros((20, 60, 20), np.float32)
    data[5:15, 5:55, 5:15] = 1.0
    data[5:15, 50:55, 5:15] = 7.0  # a marked slab near the high edge
    out, start = sim.wraparound(data, axis=1, fov_fraction=0.6)
    assert out.shape[1] == 30
    # the marked slab (outside the FOV at the high end) folds onto the low edge of the FOV
    low_edge = out[5:15, : 55 - (start + 30), 5:15]
    assert low_edge.max() >= 7.0
    assert np.isclose(out.sum(), data.sum())  # aliasing adds, it does not lose signal


def test_missing_coverage_zeroes_a_slab():
    data = phantom()
    out = sim.missing_coverage(data, axis=2, side="high", fraction=0.3)
    low, high = sim.foreground_bbox(data)[2]
    cut = int(round(0.3 * (high - low + 1)))
    assert np.all(out[:, :, high - cut + 1:] == 0)
    assert np.array_equal(out[:, :, :high - cut + 1], data[:, :, :high - cut + 1])


def test_a_coverage_crop_cuts_the_same_slab_off_the_array_and_keeps_world_positions():
    """Missing coverage as a scanner writes it: the slab missing_coverage zeroes is gone from
    the array, what is left is the scan as it was, and every kept voxel keeps its place in
    the world (the affine moves with a crop at the low end)."""
    data = phantom()
    for side in ("low", "high"):
        zeroed = sim.missing_coverage(data, axis=1, side=side, fraction=0.3)
        cropped, start = sim.coverage_crop(data, axis=1, side=side, fraction=0.3)
        stop = start + cropped.shape[1]
        assert 0 < cropped.shape[1] < data.shape[1] and (start > 0) == (side == "low")
        assert np.array_equal(cropped, data[:, start:stop]) and np.array_equal(cropped, zeroed[:, start:stop])
        assert not zeroed[:, :start].any() and not zeroed[:, stop:].any()  # the rest is the zeroed slab
        assert data[:, :start].any() or data[:, stop:].any()  # which held part of the head
    affine = np.diag([1.0, 2.0, 1.5, 1.0])
    affine[:3, 3] = [-30, -40, -20]
    img = nib.Nifti1Image(data, affine)
    params = {"axis": 1, "side": "low", "fraction": 0.3, "crop": True}
    out = apply_artifact(img, "missing_coverage", params)
    _, start = sim.coverage_crop(data, axis=1, side="low", fraction=0.3)
    assert start > 0 and out.shape[1] == data.shape[1] - start
    assert np.allclose(out.affine @ [3, 0, 4, 1], affine @ [3, start, 4, 1])
    assert np.array_equal(np.asarray(out.dataobj), data[:, start:, :])
    zeroed = apply_artifact(img, "missing_coverage", dict(params, crop=False))
    assert np.array_equal(zeroed.affine, affine) and zeroed.shape == data.shape
    assert np.array_equal(np.asarray(zeroed.dataobj), sim.missing_coverage(data, axis=1, side="low", fraction=0.3))
    with pytest.raises(ValueError, match="leaves"):
        sim.coverage_crop(data[:, :, :10], axis=2, side="high", fraction=0.95)
    # a cropped draw is the zero-filled one with the crop flag; no other artifact takes it
    drawn = sample_params("missing_coverage", "severe", np.random.default_rng(4), data, (1, 1, 1), crop=True)
    assert drawn == dict(sample_params("missing_coverage", "severe", np.random.default_rng(4), data, (1, 1, 1)),
                         crop=True)
    with pytest.raises(ValueError, match="missing_coverage only"):
        sample_params("wraparound", "severe", np.random.default_rng(4), data, (1, 1, 1), crop=True)


def test_noise_is_rician_with_the_requested_level():
    data = phantom()
    out = sim.noise(data, sigma=0.1, seed=3)
    level = 0.1 * sim.foreground_mean(data)
    background = out[data == 0]
    assert abs(background.mean() - level * np.sqrt(np.pi / 2)) < 0.05 * level
    assert np.all(out >= 0)


def test_bias_multiplies_by_a_smooth_field():
    data = phantom()
    n = sim.n_bias_coefficients(3)
    assert np.array_equal(sim.bias(data, [0.0] * n), data)
    coefficients = [0.0] * n
    coefficients[1] = 0.5  # linear along the last axis
    out = sim.bias(data, coefficients)
    inside = data > 0
    z = np.broadcast_to(np.linspace(-1, 1, data.shape[2]), data.shape)
    assert np.allclose(out[inside] / data[inside], np.exp(0.5 * z[inside]), rtol=1e-5)


def test_thick_slices_are_constant_within_a_slab():
    data = np.random.default_rng(0).random((10, 12, 30)).astype(np.float32)
    out = sim.thick_slices(data, (1.0, 1.0, 1.0), axis=2, thickness_mm=5.0)
    for start in range(0, 25, 5):
        block = out[:, :, start:start + 5]
        assert np.allclose(block, block[:, :, :1])


def test_gibbs_rings_at_edges():
    data = np.zeros((64, 16, 16), np.float32)
    data[16:48] = 100
    out = sim.gibbs(data, axes=[0], keep_fraction=0.25)
    assert out.max() > 105  # overshoot next to the edge
    assert out[30:34].mean() == pytest.approx(100, rel=0.1)


def test_spike_adds_a_single_frequency_pattern():
    data = np.full((16, 48, 16), 100.0, np.float32)
    out = sim.spike(data, positions=[[0.0, 0.25, 0.0]], intensity=0.3)
    diff = out - data
    assert np.abs(diff).max() > 20  # a 30% stripe pattern
    spectrum = np.abs(np.fft.fft(diff.mean(axis=(0, 2))))
    peak = int(np.argmax(spectrum[1:len(spectrum) // 2])) + 1
    assert peak == 12  # 0.25 * 48 cycles along axis 1


def test_motion_without_moves_after_the_scan_is_identity_and_moves_change_it():
    data = phantom()
    same = sim.motion(data, (1, 1, 1), axis=1, times=[1.0], rotations_deg=[[5, 0, 0]],
                      translations_mm=[[0, 4, 0]])
    assert np.allclose(same, data, atol=1e-3)
    moved = sim.motion(data, (1, 1, 1), axis=1, times=[0.4], rotations_deg=[[5, 0, 0]],
                       translations_mm=[[0, 4, 0]])
    assert np.abs(moved - data).mean() > 1.0


def test_bad_slices_dropout_and_swap():
    data = np.random.default_rng(1).random((8, 8, 20)).astype(np.float32)
    out = sim.bad_slices(data, axis=2, starts=[4], width=3, scale=0.0, mode="dropout")
    assert np.all(out[:, :, 4:7] == 0) and np.array_equal(out[:, :, 7:], data[:, :, 7:])
    swapped = sim.bad_slices(data, axis=2, starts=[2, 12], width=2, scale=1.0, mode="swap")
    assert np.array_equal(swapped[:, :, 2:4], data[:, :, 12:14])
    assert np.array_equal(swapped[:, :, 12:14], data[:, :, 2:4])


@pytest.mark.parametrize("artifact", ARTIFACTS)
@pytest.mark.parametrize("severity", SEVERITIES)
def test_samplers_stay_in_documented_ranges(artifact, severity):
    data = phantom()
    rng = np.random.default_rng(11)
    ranges = sim.RANGES[artifact]
    for _ in range(30):
        p = sample_params(artifact, severity, rng, data, (1.0, 1.0, 1.0))
        if artifact == "motion":
            lo, hi = ranges["n_moves"][severity]
            assert lo <= len(p["times"]) <= hi
            for rot, trans in zip(p["rotations_deg"], p["translations_mm"]):
                assert np.abs(rot).max() <= ranges["rotation_deg"][severity][1] + 1e-6
                assert np.abs(trans).max() <= ranges["translation_mm"][severity][1] + 1e-6
        elif artifact == "bias":
            amplitude = ranges["amplitude"][severity][1]
            assert max(abs(c) for c in p["coefficients"]) <= amplitude + 1e-6
        elif artifact == "bad_slices":
            assert ranges["scale"][severity][0] <= p["scale"] <= ranges["scale"][severity][1]
            assert p["mode"] in ("dropout", "swap")
        elif artifact == "spike":
            assert ranges["intensity"][severity][0] <= p["intensity"] <= ranges["intensity"][severity][1]
        else:
            name = {"ghosting": "intensity", "noise": "sigma", "thick_slices": "thickness_mm",
                    "wraparound": "fov_fraction", "gibbs": "keep_fraction",
                    "missing_coverage": "fraction"}[artifact]
            lo, hi = ranges[name][severity]
            assert lo - 1e-3 <= p[name] <= hi + 1e-3


def test_severe_ranges_are_beyond_mild_ones():
    for artifact, params in sim.RANGES.items():
        for name, by_severity in params.items():
            if name in ("period", "n_spikes", "scale"):
                continue
            mild, severe = by_severity["mild"], by_severity["severe"]
            if name in ("fov_fraction", "keep_fraction"):  # smaller is worse
                assert severe[1] <= mild[0], (artifact, name)
            else:
                assert severe[0] >= mild[0] and severe[1] > mild[1], (artifact, name)


def test_unknown_artifact_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown artifact 'blur'"):
        simulate(image(), "blur", "severe", np.random.default_rng(0))


def test_simulate_cli_writes_a_corrupted_image(tmp_path, stripped_t1w):
    from bidsqc.cli.simulate import main

    out = tmp_path / "motion.nii.gz"
    assert main([str(stripped_t1w), str(out), "--artifact", "missing_coverage", "--severity", "severe",
                 "--seed", "3"]) == 0
    corrupted = np.asarray(nib.load(out).dataobj)
    original = np.asarray(nib.as_closest_canonical(nib.load(stripped_t1w)).dataobj)
    assert corrupted.shape == original.shape
    assert (corrupted == 0).sum() > (original == 0).sum()
    # --crop: the same slab cut off the image, the rest in its place in the world
    cropped_file = tmp_path / "cropped.nii.gz"
    assert main([str(stripped_t1w), str(cropped_file), "--artifact", "missing_coverage", "--severity", "severe",
                 "--seed", "3", "--crop"]) == 0
    cropped = nib.load(cropped_file)
    data = np.asarray(cropped.dataobj)
    axis = int(np.flatnonzero(np.array(data.shape) < np.array(original.shape))[0])
    start = int(round(np.linalg.solve(nib.load(out).affine, cropped.affine @ [0, 0, 0, 1])[axis]))
    index = [slice(None)] * 3
    index[axis] = slice(start, start + data.shape[axis])
    assert np.array_equal(data, corrupted[tuple(index)]) and not np.delete(
        corrupted, np.arange(start, start + data.shape[axis]), axis=axis).any()
    assert main([str(stripped_t1w), str(tmp_path / "x.nii.gz"), "--artifact", "motion", "--crop"]) == 2
    assert not (tmp_path / "x.nii.gz").exists()


def _hf_energy(x):
    """Mean squared neighbour difference along axis 0."""
    return float(np.mean(np.diff(x, axis=0) ** 2))


def test_clean_variation_adds_raw_scan_noise_and_sharpening():
    """Clean variants carry the noise and crisp reconstruction of raw scans: Rician noise at
    the requested fraction of the foreground mean (its floor shows in the air), and unsharp
    masking that adds high-frequency energy; both are off by default."""
    data = sim.ndimage.gaussian_filter(phantom(), 1.5)
    plain = {"gamma": 1.0, "bias_coefficients": [0.0] * 20, "fwhm_mm": 0.0}
    base = sim.clean_variation(data, (1, 1, 1), **plain)
    assert np.allclose(base, data, atol=1e-3)  # no sharpening and no noise unless asked for
    noisy = sim.clean_variation(data, (1, 1, 1), **plain, noise_sigma=0.05, seed=3)
    air = noisy[:, :, :2]  # outside the phantom
    level = 0.05 * sim.foreground_mean(data)
    assert abs(air.mean() - level * np.sqrt(np.pi / 2)) < 0.1 * level
    sharp = sim.clean_variation(data, (1, 1, 1), **plain, sharpen=0.8)
    assert _hf_energy(sharp) > 1.1 * _hf_energy(data)
    assert sharp.min() >= 0  # magnitude images stay non-negative
    assert "noise_sigma" not in sim.sample_clean_variation(np.random.default_rng(0))  # off by default
    params = sim.sample_clean_variation(np.random.default_rng(0), raw_scan=True)
    json.dumps(params)
    for name in ("sharpen", "noise_sigma"):
        low, high = sim.CLEAN_RANGES[name]
        assert low <= params[name] <= high
    # the clean noise range stays below mild noise, so a clean variant is never a mild artifact
    assert sim.CLEAN_RANGES["noise_sigma"][1] < sim.RANGES["noise"]["sigma"]["mild"][0]


def test_reslice_makes_a_clean_scan_with_one_coarser_axis():
    """A clean anisotropic acquisition for the detectors' calibration: fewer, thicker slices
    along one axis, the world position of every slice kept by the affine."""
    data = sim.ndimage.gaussian_filter(phantom(), 1.0)
    params = {"axis": 1, "slice_factor": 1.5}
    out = apply_artifact(image(data), "anisotropic", params)
    assert out.shape == (40, 32, 36)
    assert np.allclose(out.header.get_zooms()[:3], (1.0, 1.5, 1.0))
    assert np.array_equal(np.asarray(out.dataobj), np.asarray(apply_artifact(image(data), "anisotropic",
                                                                             params).dataobj))
    # new slice j sits at native index 1.5 j + 0.25, where the (smoothed) native image has its value
    world = out.affine @ np.array([20, 10, 18, 1.0])
    assert np.allclose(world[:3], (20, 15.25, 18))
    native = sim.ndimage.gaussian_filter1d(data, np.sqrt(1.5 ** 2 - 1) / 2.355, axis=1, mode="nearest")
    expected = 0.75 * native[20, 15, 18] + 0.25 * native[20, 16, 18]
    assert np.asarray(out.dataobj)[20, 10, 18] == pytest.approx(expected, rel=1e-4)
    for seed in range(20):
        drawn = sim.sample_anisotropic(np.random.default_rng(seed))
        low, high = sim.ANISOTROPIC_RANGE["slice_factor"]
        assert low <= drawn["slice_factor"] <= high and drawn["axis"] in (0, 1, 2)
