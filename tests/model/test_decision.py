"""The decision (bidsqc.model.decision): the uncertain band, the calibrated detectors on the
ensemble's p_bad scale, the verdict and its reason."""

import numpy as np
import pytest

from bidsqc.model.decision import (UNCERTAIN_HALF_WIDTH_LOGIT, apply_detectors, band_half_width_logit, combine,
                                   decide, decision_rule, detector_probability, raise_p_bad, reason,
                                   uncertain_band, verdicts)
from bidsqc.model.ensemble import QCResult


def test_verdict_is_uncertain_where_the_fold_models_disagree():
    """pass/fail need the fold models on one side of the threshold; inside the band, or
    with the folds split, the scan is left to a rater."""
    folds = np.array([[0.1, 0.2, 0.15],     # all below: pass
                      [0.2, 0.3, 0.9],      # mean 0.47 below the band, one fold above: uncertain
                      [0.9, 0.95, 0.85],    # all above: fail
                      [0.55, 0.5, 0.58],    # all below but inside the band: uncertain
                      [0.8, 0.9, 0.55]])    # mean 0.75 above the band, one fold below: uncertain
    result = QCResult(p_bad=folds.mean(axis=1), p_bad_std=folds.std(axis=1), p_artifacts={}, p_bad_folds=folds)
    assert verdicts(result, 0.6, (0.5, 0.7)) == ["pass", "uncertain", "fail", "uncertain", "uncertain"]


def test_reason_says_which_evidence_set_the_verdict():
    """Each verdict comes with one line naming what set it: the network's p_bad against the
    threshold or the band, the fold models' split, or a native detector's score against its
    calibration (the detector's own range, never an artifact name it might not have)."""
    folds = np.array([[0.1, 0.2, 0.15], [0.2, 0.3, 0.9], [0.9, 0.95, 0.85], [0.55, 0.5, 0.58]])
    result = QCResult(p_bad=folds.mean(axis=1), p_bad_std=folds.std(axis=1), p_artifacts={}, p_bad_folds=folds)
    band = (0.5, 0.7)
    reasons = [reason(result, i, 0.6, band, float(result.p_bad[i])) for i in range(4)]
    assert reasons[0] == ("pass: the network's p_bad 0.15 is below the uncertain band (0.5); every native "
                          "detector score inside its clean training range")
    assert reasons[1].startswith("uncertain: the fold models disagree, 1 of 3 at or above the threshold 0.6")
    assert reasons[2] == "fail: the network's p_bad 0.90 is at or above the threshold 0.6"
    assert reasons[3] == "uncertain: the network's p_bad 0.54 is inside the uncertain band 0.5-0.7"
    assert reason(result, 0, 0.6, band, 0.15, detectors=False).endswith("no native detector applied")
    # a detector that raised p_bad: its score and calibration, in the output table's column name
    calibration = {"threshold": 2.0, "low": 1.75, "high": 2.3}
    raised = QCResult(p_bad=np.array([0.95, 0.55]), p_bad_std=np.zeros(2), p_artifacts={},
                      p_bad_folds=np.array([[0.95, 0.95, 0.95], [0.55, 0.55, 0.55]]))
    assert reason(raised, 0, 0.6, band, 0.1, "spike", 4.1, calibration) == (
        "fail: spike_score 4.1 is at or above its threshold 2 (clean training scans up to 1.75, simulated "
        "artifacts from 2.3)")
    assert reason(raised, 1, 0.6, band, 0.1, "bad_slices", 1.8, calibration).startswith(
        "uncertain: slice_score 1.8 is above its clean range and below its threshold 2 ")


def test_uncertain_band_leaves_room_for_pass_and_fail():
    """The band is +-0.15 around 0.5 and narrows in log-odds towards 0 and 1: around a
    threshold of 0.86 a +-0.15 band would reach 1 and make `fail` unreachable."""
    assert uncertain_band(0.5) == (0.35, 0.65)
    for threshold in (0.02, 0.3, 0.68, 0.86, 0.97):
        low, high = uncertain_band(threshold)
        assert 0 < low < threshold < high < 1
        assert band_half_width_logit((low, high)) == pytest.approx(UNCERTAIN_HALF_WIDTH_LOGIT, abs=0.02)
    folds = np.array([[0.99, 0.98, 0.99], [0.1, 0.05, 0.08]])
    result = QCResult(p_bad=folds.mean(axis=1), p_bad_std=folds.std(axis=1), p_artifacts={}, p_bad_folds=folds)
    assert verdicts(result, 0.86, uncertain_band(0.86)) == ["fail", "pass"]
    assert verdicts(result, 0.86, (0.71, 1.0)) == ["uncertain", "pass"]  # the clipped band of old
    # a band moved to another threshold keeps its width in log-odds
    wide = uncertain_band(0.6, 1.0)
    assert band_half_width_logit(uncertain_band(0.95, band_half_width_logit(wide))) == pytest.approx(1.0, abs=0.02)


def test_probability_maps_the_calibration_onto_the_ensemble_scale():
    cal = {"threshold": 2.0, "low": 1.5, "high": 3.0}
    band = (0.78, 0.92)
    half = float((np.log(band[1] / (1 - band[1])) - np.log(band[0] / (1 - band[0]))) / 2)
    threshold = 0.86
    assert detector_probability(1.49, cal, threshold, half) == 0.0
    assert detector_probability(2.0, cal, threshold, half) == pytest.approx(threshold)
    assert detector_probability(1.5, cal, threshold, half) == pytest.approx(band[0], abs=0.01)
    assert detector_probability(3.0, cal, threshold, half) == pytest.approx(band[1], abs=0.01)
    values = [detector_probability(s, cal, threshold, half) for s in (1.6, 2.5, 4, 8)]
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
    raise_p_bad(result, 0, p)
    assert result.p_bad[0] == p and verdicts(result, 0.86, (0.77, 0.92)) == ["fail"]
    # apply: the same on a result, with the band's half-width taken from the band
    band = (0.77, 0.92)
    result = QCResult(p_bad=np.array([0.2, 0.2]), p_bad_std=np.array([0.01, 0.01]), p_artifacts={},
                      p_bad_folds=np.array([[0.1, 0.3], [0.1, 0.3]]))
    probs, flagged = apply_detectors(result, 1, {"spike": 1.2, "ghosting": 0.5}, cals, 0.86, band)
    assert flagged == "ghosting" and probs["ghosting"] > 0.86
    assert result.p_bad[1] == pytest.approx(probs["ghosting"], abs=1e-4)
    assert result.p_bad[0] == 0.2 and verdicts(result, 0.86, band) == ["pass", "fail"]
    assert apply_detectors(result, 0, {"spike": 1.2, "ghosting": 0.01}, cals, 0.86, band)[1] is None
    assert result.p_bad[0] == 0.2


def test_decide_applies_the_detectors_then_gives_the_verdict_and_its_reason():
    """One call makes the whole decision: a detector that fires raises p_bad and names itself
    in the reason; without detectors the network alone decides and the reason says so; a
    user threshold takes the card's band along at its log-odds width."""
    cals = {"spike": {"threshold": 2.0, "low": 1.5, "high": 3.0},
            "ghosting": {"threshold": 0.1, "low": 0.03, "high": 0.3}}
    band = (0.77, 0.92)
    result = QCResult(p_bad=np.array([0.2]), p_bad_std=np.array([0.01]), p_artifacts={},
                      p_bad_folds=np.array([[0.1, 0.3]]))
    out = decide(result, 0, 0.86, band, cals, {"spike": 1.2, "ghosting": 0.5})
    assert out["flagged"] == "ghosting" and out["qc"] == "fail" and out["p_bad_network"] == 0.2
    assert out["p_bad"] == pytest.approx(out["p_detectors"]["ghosting"], abs=1e-4) and out["p_bad"] > 0.92
    assert out["reason"].startswith("fail: ghost_score 0.5 is at or above its threshold 0.1 ")
    plain = QCResult(p_bad=np.array([0.2]), p_bad_std=np.array([0.01]), p_artifacts={},
                     p_bad_folds=np.array([[0.1, 0.3]]))
    out = decide(plain, 0, 0.86, band)
    assert "p_detectors" not in out and out["flagged"] is None and out["qc"] == "pass"
    assert out["reason"].endswith("no native detector applied")
    assert decision_rule(0.86, band, -1.0) == (0.86, band) and decision_rule(0.86, band, None) == (0.86, band)
    threshold, moved = decision_rule(0.86, band, 0.5)
    assert threshold == 0.5 and moved[0] < 0.5 < moved[1]
    assert band_half_width_logit(moved) == pytest.approx(band_half_width_logit(band), abs=0.02)
