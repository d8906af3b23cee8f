"""Moves on the model grid: random affines stay in their ranges, ``spatial_transform`` moves
about the grid centre without smoothing, and a move composed with the registration
(``grid_move``) is the same move with no second resampling, whose zooms (``jitter_move``)
change the fine texture less than mild noise does."""

import numpy as np
import pytest
from scipy import ndimage

from bidsqc.preprocessing.conform import conform, load_image
from bidsqc.preprocessing.pipeline import DEFAULT_SHAPE, make_grid, to_model_grid
from bidsqc.preprocessing.register import register_affine
from bidsqc.training.geometry import (JITTER_RANGES, SPATIAL_RANGES, axis_rotation, grid_move, jitter_move,
                                      random_affine, spatial_transform, zoom_range)


def laplacian_energy(volume, region):
    """RMS of the Laplacian (fine texture) of ``volume`` inside ``region``."""
    return np.sqrt(np.mean(ndimage.laplace(volume.astype(np.float64))[region] ** 2))


@pytest.fixture(scope="module")
def registered(stripped_t1w, nlin6):
    """A real scan conformed and registered: (RAS image, template_to_t1w, grid affine)."""
    ras, _ = conform(load_image(stripped_t1w))
    template_to_t1w, _ = register_affine(ras, nlin6)
    return ras, template_to_t1w, make_grid(nlin6)


def on_model_grid(registered, nlin6, matrix=np.eye(3), shift=(0, 0, 0)):
    """The registered scan on the model grid, moved by (matrix, shift) inside its one resampling."""
    ras, template_to_t1w, grid = registered
    return to_model_grid(ras, template_to_t1w @ grid_move(matrix, shift, DEFAULT_SHAPE, grid), nlin6,
                         DEFAULT_SHAPE, grid, np.ones(DEFAULT_SHAPE, bool))[0]


def test_random_affines_stay_in_their_ranges_and_repeat_with_the_seed():
    r = SPATIAL_RANGES
    low, high = zoom_range(r)
    rng = np.random.default_rng(5)
    angles, shifts = [], []
    for _ in range(300):
        matrix, shift = random_affine(rng)
        u, s, vt = np.linalg.svd(matrix)
        assert low - 1e-9 <= s.min() and s.max() <= high + 1e-9
        rotation = u @ vt
        angles.append(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1))))
        shifts.append(shift)
    shifts = np.array(shifts)
    assert np.abs(shifts).max() <= r["shift_voxels"] and np.abs(shifts).max() > 0.9 * r["shift_voxels"]
    # three rotations of up to 10 degrees each: at most about 17 degrees in all, often several
    assert max(angles) <= np.sqrt(3) * r["rotation_deg"] + 1e-6 and np.median(angles) > 3
    a, b = random_affine(np.random.default_rng(9)), random_affine(np.random.default_rng(9))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_spatial_transform_moves_scales_and_turns_about_the_grid_centre():
    shape = (32, 38, 32)
    centre = (np.array(shape) - 1) / 2
    volume = np.zeros(shape, np.float32)
    volume[20:24, 22:26, 14:18] = 1.0  # a blob off centre
    com = np.array(ndimage.center_of_mass(volume))
    shifted = spatial_transform(volume, np.eye(3), (2, -1, 0))
    assert np.allclose(ndimage.center_of_mass(shifted), com + [2, -1, 0], atol=1e-3)
    scaled = spatial_transform(volume, np.diag([1.1] * 3), (0, 0, 0))
    assert np.allclose(ndimage.center_of_mass(scaled), centre + 1.1 * (com - centre), atol=0.05)
    assert scaled.sum() == pytest.approx(1.1 ** 3 * volume.sum(), rel=0.02)
    quarter = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # x -> y about z
    turned = spatial_transform(volume, quarter, (0, 0, 0))
    assert np.allclose(ndimage.center_of_mass(turned), centre + quarter @ (com - centre), atol=1e-3)
    assert np.allclose(spatial_transform(volume, np.eye(3), (0, 0, 0)), volume, atol=1e-5)


def test_spatial_transform_keeps_the_fine_texture():
    """The augmentation must not smooth: smoothing is itself an artifact cue (thick slices,
    motion), so a sub-voxel move of a textured volume keeps most of its Laplacian energy
    (linear interpolation keeps about half at a half-voxel shift)."""
    rng = np.random.default_rng(0)
    volume = ndimage.gaussian_filter(rng.random((32, 38, 32)), 0.7).astype(np.float32)
    inner = (slice(6, -6),) * 3
    def energy(v):
        return laplacian_energy(v, inner)
    moved = spatial_transform(volume, axis_rotation(2, np.radians(3.0)) * 1.02, (0.5, 0.5, 0.5))
    assert energy(moved) > 0.8 * energy(volume)  # 0.87 measured
    linear = ndimage.shift(volume, (0.5, 0.5, 0.5), order=1)
    assert energy(linear) < 0.6 * energy(volume)  # 0.47: what the check guards against


def test_a_move_at_registration_is_the_grid_move_without_a_second_resampling(registered, nlin6):
    """``--registration-jitter`` moves the scan inside its one resampling: the volume is the
    one ``spatial_transform`` gives on the grid, but keeps the fine texture a second
    resampling takes away (docs/model.md: even cubic resampling takes more than mild noise adds)."""
    matrix, shift = axis_rotation(2, np.radians(4.0)), (0.5, -1.5, 0.5)  # no scale: a zoom changes the texture
    unmoved = on_model_grid(registered, nlin6)
    at_registration = on_model_grid(registered, nlin6, matrix, shift)
    on_grid = spatial_transform(unmoved, matrix, shift)
    inner = ndimage.binary_erosion(on_grid > 0.1, iterations=3)
    def corr(a, b):
        return np.corrcoef(a[inner], b[inner])[0, 1]
    def energy(v):
        return laplacian_energy(v, inner)
    assert corr(at_registration, on_grid) > 0.97  # the same move (0.99 measured)
    assert corr(at_registration, on_grid) > corr(at_registration, unmoved) + 0.05  # and a real one (0.66)
    assert energy(at_registration) > 0.95 * energy(unmoved)  # 0.996
    assert energy(on_grid) < 0.9 * energy(unmoved)  # 0.87


def test_registration_jitter_zooms_change_the_texture_less_than_mild_noise(registered, nlin6):
    """A zoom at registration changes the fine texture on the grid (shrinking adds, enlarging
    takes away); ``--registration-jitter`` draws zooms small enough that its moved clean
    volumes stay closer to the unmoved ones than mild noise (1.09 times the Laplacian energy,
    benchmarks/bench_smoothing.py), where ``--spatial-augment``'s zooms do not."""
    def brain_texture(volume):
        region = ndimage.binary_erosion(volume > 0.1, iterations=3)
        return laplacian_energy(volume / volume[region].mean(), region)
    unmoved = brain_texture(on_model_grid(registered, nlin6))
    def energy(zoom):
        return brain_texture(on_model_grid(registered, nlin6, np.eye(3) * zoom)) / unmoved
    jitter_low, jitter_high = zoom_range(JITTER_RANGES)
    spatial_low, spatial_high = zoom_range(SPATIAL_RANGES)
    assert 1.0 < energy(jitter_low) < 1.09 and 0.91 < energy(jitter_high) < 1.0
    assert energy(spatial_low) > 1.09 and energy(spatial_high) < 0.91
    for seed in range(50):  # the moves drawn stay within those zooms
        s = np.linalg.svd(jitter_move(seed)[0], compute_uv=False)
        assert jitter_low - 1e-9 <= s.min() and s.max() <= jitter_high + 1e-9
