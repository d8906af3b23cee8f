"""Native-space spike and ghosting detectors (bidsqc.detectors): they respond to their
artifact on real scans, stay low on clean stripped and raw scans, and their calibration
maps onto the ensemble's p_bad scale without touching scans below the clean range."""

import nibabel as nib
import numpy as np
import pytest

from bidsqc.artifacts.simulators import ghosting, noise, spike
from bidsqc.detectors import apply, calibrate, combine, ghost_score, probability, spike_score
from bidsqc.model.ensemble import QCResult


@pytest.fixture(scope="module")
def stripped(stripped_t1w):
    img = nib.load(stripped_t1w)
    return np.asarray(img.dataobj, np.float32), img.header.get_zooms()[:3]


@pytest.fixture(scope="module")
def raw_head(shared_data):
    img = nib.load(shared_data / "ixi" / "IXI012-HH-1211_T1.nii.gz")
    return np.asarray(img.dataobj, np.float32), img.header.get_zooms()[:3]


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


def test_detectors_reject_a_non_3d_input():
    with pytest.raises(ValueError, match="3D volume"):
        spike_score(np.ones((10, 10), np.float32))


def test_calibration_sits_between_clean_and_artifact_scores():
    rng = np.random.default_rng(0)
    clean, bad = rng.uniform(1.0, 1.6, 200), rng.uniform(3.5, 5.0, 60)
    cal = calibrate(clean, bad)
    assert np.quantile(clean, 0.98) < cal["low"] < cal["threshold"] < cal["high"] <= np.quantile(bad, 0.06)
    assert cal["sensitivity"] == 1.0 and cal["specificity"] == 1.0
    # overlapping scores: the threshold with the best balanced accuracy, inside the zone
    cal = calibrate(rng.uniform(0, 2, 200), rng.uniform(1, 3, 200))
    assert cal["low"] < cal["threshold"] < cal["high"] and 1.0 <= cal["threshold"] <= 2.0
    assert (cal["sensitivity"] + cal["specificity"]) / 2 == pytest.approx(0.75, abs=0.03)


def test_probability_maps_the_calibration_onto_the_ensemble_scale():
    cal = {"threshold": 2.0, "low": 1.5, "high": 3.0}
    band = (0.78, 0.92)
    half = float((np.log(band[1] / (1 - band[1])) - np.log(band[0] / (1 - band[0]))) / 2)
    threshold = 0.86
    assert probability(1.49, cal, threshold, half) == 0.0
    assert probability(2.0, cal, threshold, half) == pytest.approx(threshold)
    assert probability(1.5, cal, threshold, half) == pytest.approx(band[0], abs=0.01)
    assert probability(3.0, cal, threshold, half) == pytest.approx(band[1], abs=0.01)
    values = [probability(s, cal, threshold, half) for s in (1.6, 2.5, 4, 8)]
    assert values == sorted(values) and values[-1] < 1


def test_combining_raises_p_bad_only_where_a_detector_fires():
    cals = {"spike": {"threshold": 2.0, "low": 1.5, "high": 3.0},
            "ghosting": {"threshold": 0.1, "low": 0.03, "high": 0.3}}
    p, probs, flagged = combine(0.2, {"spike": 1.2, "ghosting": 0.01}, cals, 0.86, 0.6)
    assert p == 0.2 and flagged is None and probs == {"spike": 0.0, "ghosting": 0.0}
    p, probs, flagged = combine(0.2, {"spike": 1.2, "ghosting": 0.5}, cals, 0.86, 0.6)
    assert flagged == "ghosting" and p > 0.86
    # the network's own higher p_bad stands
    assert combine(0.99, {"spike": 4.0, "ghosting": 0.0}, cals, 0.86, 0.6)[2] is None
    # raising the result moves every fold, so the verdict is not 'split'
    result = QCResult(p_bad=np.array([0.2]), p_bad_std=np.array([0.01]), p_artifacts={},
                      p_bad_folds=np.array([[0.1, 0.3]]))
    result.raise_p_bad(0, p)
    assert result.p_bad[0] == p and result.verdicts(0.86, (0.77, 0.92)) == ["fail"]
    # apply: the same on a result, with the band's half-width taken from the band
    band = (0.77, 0.92)
    result = QCResult(p_bad=np.array([0.2, 0.2]), p_bad_std=np.array([0.01, 0.01]), p_artifacts={},
                      p_bad_folds=np.array([[0.1, 0.3], [0.1, 0.3]]))
    probs, flagged = apply(result, 1, {"spike": 1.2, "ghosting": 0.5}, cals, 0.86, band)
    assert flagged == "ghosting" and probs["ghosting"] > 0.86
    assert result.p_bad[1] == pytest.approx(probs["ghosting"], abs=1e-4)
    assert result.p_bad[0] == 0.2 and result.verdicts(0.86, band) == ["pass", "fail"]
    assert apply(result, 0, {"spike": 1.2, "ghosting": 0.01}, cals, 0.86, band)[1] is None
    assert result.p_bad[0] == 0.2
