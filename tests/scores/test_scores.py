"""Native-space scores (bidsqc.scores): the detectors' scores and the scores the artifact
naming uses respond to their artifact on real scans and stay low on clean stripped and raw
scans."""

import nibabel as nib
import numpy as np
import pytest

from bidsqc.artifacts.simulators import (bad_slices, bias, coverage_crop, ghosting, gibbs, missing_coverage, motion,
                                         noise, spike, thick_slices, wraparound)
from bidsqc.scores import (FEATURES, REGISTERED, background_score, bias_score, brain_extent, brain_voxels,
                           fold_score, ghost_score, inner_slice_score, noise_score, scores, slice_score,
                           spike_score, thick_score, truncation_score, uncovered_score)


@pytest.fixture(scope="module")
def stripped(stripped_t1w):
    img = nib.load(stripped_t1w)
    return np.asarray(img.dataobj, np.float32), img.header.get_zooms()[:3]


@pytest.fixture(scope="module")
def raw_head(shared_data):
    img = nib.load(shared_data / "ixi" / "IXI012-HH-1211_T1.nii.gz")
    return np.asarray(img.dataobj, np.float32), img.header.get_zooms()[:3]


def test_a_field_of_view_that_cuts_the_head_is_no_spike(stripped):
    """A raw head ends where its field of view does (the neck): the volume cut 15 % into the
    head along any axis scores as the whole does, and a spike in it still stands out."""
    data, _ = stripped
    head = np.argwhere(data > 0.1 * np.percentile(data, 99))
    low, high = head.min(axis=0), head.max(axis=0)
    whole = spike_score(data)
    for axis in range(3):
        cut = np.ascontiguousarray(np.take(data, np.arange(int(low[axis] + 0.15 * (high[axis] - low[axis])),
                                                           data.shape[axis]), axis=axis))
        clean = spike_score(cut)
        assert abs(clean - whole) < 0.2, (axis, whole, clean)
        assert spike_score(spike(cut, positions=[[0.11, -0.07, 0.2]], intensity=0.15)) > clean + 1.5


def test_a_defaced_head_is_no_spike(raw_head):
    """Defacing sets the face to exact zeros behind a straight edge through the head, which
    leaks peaks along the edge's normal as a cut field of view does: a raw head with a wedge
    of it zeroed scores within 0.2 of the whole head (without the weight that tapers the scan
    at a blanked region: 0.8-1.0 higher), and a spike in it still stands out."""
    data, zooms = raw_head
    head = np.argwhere(data > 0.1 * np.percentile(data, 99))
    low, high = head.min(axis=0), head.max(axis=0)
    whole = spike_score(data, zooms=zooms)
    for a, b in ((0, 1), (1, 2)):
        ca = (np.arange(data.shape[a]) - low[a]) / (high[a] - low[a])
        cb = (np.arange(data.shape[b]) - low[b]) / (high[b] - low[b])
        wedge = (ca.reshape([-1 if i == a else 1 for i in range(3)])
                 + cb.reshape([-1 if i == b else 1 for i in range(3)]))
        defaced = np.where(wedge < 0.6, 0, data).astype(np.float32)
        clean = spike_score(defaced, zooms=zooms)
        assert abs(clean - whole) < 0.2, ((a, b), whole, clean)
        spiked = spike_score(spike(defaced, positions=[[0.11, -0.07, 0.2]], intensity=0.15), zooms=zooms)
        assert spiked > clean + 1.5, ((a, b), clean, spiked)


def test_spike_score_rises_with_a_kspace_spike_and_is_deterministic(stripped, raw_head):
    for data, _ in (stripped, raw_head):
        clean = spike_score(data)
        spiked = spike_score(spike(data, positions=[[0.11, -0.07, 0.2]], intensity=0.15))
        assert spiked > clean + 1.0, (clean, spiked)
        assert spike_score(data) == clean
    # white noise raises no isolated peak
    data, _ = stripped
    assert spike_score(noise(data, sigma=0.2, seed=0)) < spike_score(data) + 0.5


def test_ghost_score_sees_a_shifted_copy_in_the_background_not_noise(stripped, raw_head):
    for data, zooms in (stripped, raw_head):
        clean = ghost_score(data, zooms)
        ghosted = ghost_score(ghosting(data, axis=1, period=2, intensity=0.7), zooms)
        assert clean < 0.05 and ghosted > 0.2, (clean, ghosted)
    data, zooms = stripped
    assert ghost_score(noise(data, sigma=0.05, seed=1), zooms) < 0.05
    # a volume with no background left gives 0, not an error
    assert ghost_score(np.ones((20, 20, 20), np.float32)) == 0.0


def test_thick_score_sees_slices_copied_along_one_axis_not_anisotropic_voxels(stripped, raw_head, shared_data):
    for data, zooms in (stripped, raw_head):
        clean = thick_score(data, zooms)
        assert clean < 0.5, clean
        for axis in range(3):
            thick = thick_score(thick_slices(data, zooms, axis=axis, thickness_mm=5.0), zooms)
            assert thick > clean + 2.0, (axis, clean, thick)
    # a scan acquired with 2 x 2 x 3 mm voxels is not a thick-slice scan on a fine grid
    img = nib.load(shared_data / "raw" / "itk_KmeansTest_T1UCharRaw.nii.gz")
    assert thick_score(np.asarray(img.dataobj, np.float32), img.header.get_zooms()[:3]) < 0.5


def test_slice_score_sees_dropped_and_misordered_slabs(stripped, raw_head):
    for data, zooms in (stripped, raw_head):
        clean = slice_score(data, zooms)
        assert clean < 0.8, clean
        n = data.shape[1]
        dropped = slice_score(bad_slices(data, axis=1, starts=[n // 2], width=3, scale=0.5), zooms)
        swapped = slice_score(bad_slices(data, axis=1, starts=[n // 3, n // 2], width=3, scale=1.0, mode="swap"),
                              zooms)
        cut = slice_score(missing_coverage(data, axis=2, side="high", fraction=0.3), zooms)
        assert min(dropped, swapped, cut) > clean + 0.3, (clean, dropped, swapped, cut)
        # noise raises every slice pair's difference alike
        assert slice_score(noise(data, sigma=0.1, seed=2), zooms) < clean + 0.2


def test_inner_slice_score_sees_slabs_inside_the_data_not_a_slab_zero_filled_at_an_end(stripped, raw_head):
    """The naming's inner_slices: slices dropped or out of order break inside the data (as
    slice_score); a slab of missing coverage zero-filled at an end breaks only into the zero
    planes, which it leaves out (slice_score counts it), as it does zero padding."""
    for data, zooms in (stripped, raw_head):
        clean = inner_slice_score(data, zooms)
        assert clean < 0.8, clean
        n = data.shape[1]
        for bad in (bad_slices(data, axis=1, starts=[n // 2], width=3, scale=0.5),
                    bad_slices(data, axis=1, starts=[n // 3, n // 2], width=3, scale=1.0, mode="swap")):
            assert inner_slice_score(bad, zooms) == slice_score(bad, zooms) > clean + 0.3
        for side in ("low", "high"):
            cut = missing_coverage(data, axis=2, side=side, fraction=0.3)
            assert slice_score(cut, zooms) > clean + 0.3
            assert inner_slice_score(cut, zooms) < clean + 0.2, side
        padded = np.pad(data, ((0, 0), (6, 6), (0, 0)))
        assert abs(inner_slice_score(padded, zooms) - clean) < 0.05
        together = scores(cut, zooms, only=["bad_slices", "inner_slices"])
        assert together == {"bad_slices": slice_score(cut, zooms), "inner_slices": inner_slice_score(cut, zooms)}
    assert inner_slice_score(np.zeros((8, 8, 8), np.float32)) == 0.0


def _padded_below(img, planes):
    """``img`` with ``planes`` zero planes added below its last axis (a larger, zero-filled field of view)."""
    shift = np.eye(4)
    shift[2, 3] = -planes
    return nib.Nifti1Image(np.pad(np.asarray(img.dataobj, np.float32), ((0, 0), (0, 0), (planes, 0))),
                           img.affine @ shift)


def test_zero_padding_below_a_neck_cut_is_no_bad_slice_a_cut_through_the_brain_is(raw_head_t1w, nlin6, tmp_path):
    """A raw head ends in the neck; resampled into a larger field of view, zero planes follow
    the cut, which breaks the run of slices as a slab cut away does. With the extent of the
    registered template brain, only a cut through the brain counts. The uncovered score is
    the share of the brain outside the measured field of view, the same whether the field of
    view ends in the brain or a slab of it is zero-filled. The registration stage of the
    pipeline adds both scores."""
    from bidsqc.interfaces.conform import Conform
    from bidsqc.interfaces.register import RegisterToTemplate
    from bidsqc.preprocessing.conform import conform, load_image
    from bidsqc.preprocessing.register import register_affine

    img, _ = conform(load_image(raw_head_t1w))
    matrix, _ = register_affine(img, nlin6)
    data, zooms = np.asarray(img.dataobj, np.float32), img.header.get_zooms()[:3]
    brain = brain_voxels(img.affine, matrix, nlin6.mask)
    extent = brain_extent(brain)
    assert 0 < extent[2][0] < extent[2][1] < data.shape[2]  # the brain lies above the neck, inside the scan
    clean = slice_score(data, zooms, extent=extent)
    assert clean == slice_score(data, zooms) < 0.8  # no zero planes: nothing left out
    assert uncovered_score(data, brain) == 0.0
    padded = _padded_below(img, 20)
    pad_data = np.asarray(padded.dataobj, np.float32)
    assert slice_score(pad_data, zooms) > clean + 0.5  # without the registration, the padding reads as a cut
    pad_brain = brain_voxels(padded.affine, matrix, nlin6.mask)
    pad_extent = brain_extent(pad_brain)
    assert pad_extent[2][0] == pytest.approx(extent[2][0] + 20, abs=0.01)
    assert abs(slice_score(pad_data, zooms, extent=pad_extent) - clean) < 0.05
    assert uncovered_score(pad_data, pad_brain) == 0.0
    # a slab cut away through the top of the brain still counts, and so does a cut slab inside
    top_cut = missing_coverage(data, axis=2, side="high", fraction=0.2)
    assert slice_score(top_cut, zooms, extent=extent) > clean + 0.5
    dropped = bad_slices(pad_data, axis=2, starts=[int(pad_extent[2][0] + 40)], width=3, scale=0.3)
    assert slice_score(dropped, zooms, extent=pad_extent) > clean + 0.5
    # the brain above the last data plane is uncovered, zero-filled or beyond a shorter array alike
    last = int(np.flatnonzero(top_cut.any(axis=(0, 1)))[-1])
    share = uncovered_score(top_cut, brain)
    assert share == pytest.approx(float((brain[2] > last + 0.5).mean()), abs=1e-4) and share > 0.05
    assert uncovered_score(data[:, :, :last + 1], brain) == share
    assert uncovered_score(top_cut, brain) == scores(top_cut, zooms, only=["uncovered"], brain=brain)["uncovered"]
    with pytest.raises(ValueError, match="registration"):
        scores(data, zooms, only=["uncovered"])
    assert "uncovered" not in scores(data, zooms, only=None)  # nothing to say without a registration

    # the pipeline: Conform scores all but the registered scores, RegisterToTemplate adds them
    path = tmp_path / "padded.nii.gz"
    nib.save(padded, path)
    for stage in ("conform", "register"):
        (tmp_path / stage).mkdir()
    conformed = Conform(in_file=str(path)).run(cwd=str(tmp_path / "conform")).outputs
    assert not set(REGISTERED) & set(conformed.info["detector_scores"])
    registered = RegisterToTemplate(in_file=conformed.out_file, info=conformed.info).run(
        cwd=str(tmp_path / "register")).outputs
    scores_out = registered.info["detector_scores"]
    assert set(scores_out) == set(FEATURES)
    assert abs(scores_out["bad_slices"] - clean) < 0.05 and scores_out["uncovered"] < 0.01


def test_fold_score_tells_a_fold_from_a_field_of_view_that_ends_in_the_head(stripped, raw_head):
    """A fold (a field of view 80 % of the head's extent) brings the head to both ends of the
    axis and runs on across the edge; the same head with 15 % cut off either end, off the
    array or zeroed, reaches the ends with different anatomy there, or not at all."""
    for data, _ in (stripped, raw_head):
        clean = fold_score(data)
        assert clean < 0.01
        for axis in range(3):
            folded = fold_score(wraparound(data, axis, 0.8)[0])
            cuts = [fold_score(coverage_crop(data, axis, side, 0.15)[0]) for side in ("low", "high")]
            cuts += [fold_score(missing_coverage(data, axis, side, 0.15)) for side in ("low", "high")]
            assert folded > 0.15 and max(cuts) < 0.03 and folded > 5 * max(cuts), (axis, folded, cuts)
    assert fold_score(np.zeros((8, 8, 8), np.float32)) == 0.0


def test_truncation_score_sees_the_cut_in_kspace_that_rings(stripped, raw_head):
    for data, zooms in (stripped, raw_head):
        clean = truncation_score(data)
        cut = truncation_score(gibbs(data, axes=[1], keep_fraction=0.2))
        moved = truncation_score(motion(data, zooms, axis=1, times=[0.4], rotations_deg=[[3, -4, 5]],
                                        translations_mm=[[4, -3, 5]]))
        assert clean < 0.6 and cut > 2.0 and moved < cut - 1.0, (clean, cut, moved)


def test_bias_and_background_scores(stripped, raw_head):
    for data, zooms in (stripped, raw_head):
        field = [0.0] * 20
        field[1], field[4], field[10] = 0.6, -0.5, 0.4  # linear terms along each axis: a smooth field
        clean, biased = bias_score(data, zooms), bias_score(bias(data, field), zooms)
        assert biased > clean + 0.3, (clean, biased)
    data, zooms = stripped
    # a skull-stripped scan's background is zero; noise or motion ringing put power there
    assert background_score(data, zooms) == -6.0
    assert background_score(noise(data, sigma=0.05, seed=0), zooms) > -3
    assert background_score(motion(data, zooms, axis=1, times=[0.4], rotations_deg=[[3, -4, 5]],
                                   translations_mm=[[4, -3, 5]]), zooms) > -5
    every = scores(data, zooms)
    assert list(every) == [f for f in FEATURES if f != "uncovered"]  # it needs the registration
    assert every["ghosting"] == ghost_score(data, zooms) and every["spike"] == spike_score(data)


def test_noise_score_measures_the_noise_in_even_tissue_not_edges_skull_or_a_smooth_field(stripped, raw_head):
    # a uniform ball with white noise of a known level: the score is that level
    grid = np.indices((64, 64, 64)) - 31.5
    ball = (np.sqrt((grid ** 2).sum(axis=0)) < 24).astype(np.float32) * 100
    noisy = ball + np.random.default_rng(0).normal(0, 5, ball.shape).astype(np.float32) * (ball > 0)
    assert abs(noise_score(noisy) - 0.05) < 0.01, noise_score(noisy)
    assert noise_score(ball) == 0.0
    for data, zooms in (stripped, raw_head):
        clean = noise_score(data, zooms)
        # the raw head's skull and scalp do not lift it out of the range of clean stripped scans
        assert 0.003 < clean < 0.04, clean
        assert noise_score(data, zooms) == clean
        mild, severe = (noise_score(noise(data, sigma=s, seed=3), zooms) for s in (0.1, 0.2))
        assert clean + 0.02 < mild < severe - 0.02, (clean, mild, severe)
        field = [0.0] * 20
        field[1], field[4], field[10] = 0.6, -0.5, 0.4
        # a smooth field or slices thickened onto the grid add no voxel-to-voxel noise
        assert noise_score(bias(data, field), zooms) < clean * 1.2 + 0.002
        assert noise_score(thick_slices(data, zooms, axis=2, thickness_mm=5.0), zooms) <= clean
    assert scores(stripped[0], stripped[1], only=["noise"]) == {"noise": noise_score(*stripped)}


def test_detectors_reject_a_non_3d_input():
    with pytest.raises(ValueError, match="3D volume"):
        spike_score(np.ones((10, 10), np.float32))


def test_non_finite_voxels_count_as_zero(stripped):
    data, zooms = stripped
    broken = np.asfortranarray(data.copy())  # as nibabel reads a NIfTI
    broken[::17, ::13, ::11] = np.nan
    broken[1, 1, 1], broken[2, 2, 2] = np.inf, -np.inf
    zeroed = np.where(np.isfinite(broken), broken, 0).astype(np.float32)
    assert scores(broken, zooms) == scores(zeroed, zooms)
    assert np.isnan(broken[0, 0, 0])  # the caller's array is left as it was
