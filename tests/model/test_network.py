"""The founding network: layout, Monte Carlo dropout with BatchNorm in inference mode, losses."""

import keras
import numpy as np
import pytest

from bidsqc.model.losses import dice_loss, get_loss
from bidsqc.model.network import MCDropout, build_network


@pytest.fixture(scope="module")
def small_net():
    keras.utils.set_random_seed(0)
    return build_network((32, 32, 32), n_artifacts=10)


def test_founding_layout(small_net):
    convs = [layer for layer in small_net.layers if isinstance(layer, keras.layers.Conv3D)]
    assert [c.filters for c in convs] == [16, 32, 64, 128]
    assert all(c.kernel_size == (3, 3, 3) for c in convs)
    assert len([layer for layer in small_net.layers if isinstance(layer, keras.layers.BatchNormalization)]) == 4
    assert len([layer for layer in small_net.layers if isinstance(layer, keras.layers.MaxPooling3D)]) == 5
    dense = [layer.units for layer in small_net.layers if isinstance(layer, keras.layers.Dense)]
    assert sorted(dense) == [1, 10, 64, 256]
    rates = sorted(layer.rate for layer in small_net.layers if isinstance(layer, MCDropout))
    assert rates == [0.1, 0.2, 0.2, 0.2, 0.2]


def test_mc_dropout_spreads_while_batchnorm_stays_fixed(small_net):
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 32, 1)).astype("float32")
    bn = [layer for layer in small_net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    before = [np.array(w) for layer in bn for w in layer.get_weights()]
    outs = [float(np.asarray(small_net.predict(x, verbose=0)["p_bad"])[0, 0]) for _ in range(8)]
    after = [np.array(w) for layer in bn for w in layer.get_weights()]
    assert np.std(outs) > 1e-4  # dropout is on at inference
    assert all(np.array_equal(a, b) for a, b in zip(before, after))  # BN statistics untouched
    # a batch of copies gets independent dropout masks too
    copies = np.asarray(small_net.predict(np.repeat(x, 4, axis=0), verbose=0)["p_bad"])[:, 0]
    assert np.std(copies) > 1e-4


def test_dice_loss_weights_the_rare_class():
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0], "float32")
    perfect = float(dice_loss(y, y))
    assert perfect < 0.01
    missed_rare = float(dice_loss(y, np.zeros_like(y) + 1e-3))
    missed_common = float(dice_loss(y, np.where(np.arange(8) == 1, 1.0, y).astype("float32")))
    # missing the single bad scan costs more than one false alarm among seven good ones
    assert missed_rare > missed_common > perfect
    assert 0 <= missed_rare <= 1
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("focal")


def test_dense_only_mc_dropout_is_seeded_and_spreads():
    """The shipped recipe (--dropout 0: MC dropout in the dense layers only) still gives a
    spread, and seeding the dropout masks makes a prediction repeatable."""
    from bidsqc.model.ensemble import _seed_mc_dropout

    keras.utils.set_random_seed(0)
    net = build_network((32, 32, 32), n_artifacts=10, dropout=0.0, dense_dropout=0.1)
    x = np.repeat(np.random.default_rng(0).normal(size=(1, 32, 32, 32, 1)).astype("float32"), 8, axis=0)
    runs = []
    for _ in range(2):
        _seed_mc_dropout(net, 7)
        runs.append(np.asarray(net.predict_on_batch(x)["p_bad"])[:, 0])
    assert np.array_equal(runs[0], runs[1])
    assert np.std(runs[0]) > 1e-5


def test_verdict_is_uncertain_where_the_fold_models_disagree():
    """pass/fail need the fold models on one side of the threshold; inside the band, or
    with the folds split, the scan is left to a rater."""
    from bidsqc.model.ensemble import QCResult

    folds = np.array([[0.1, 0.2, 0.15],     # all below: pass
                      [0.2, 0.3, 0.9],      # mean 0.47 below the band, one fold above: uncertain
                      [0.9, 0.95, 0.85],    # all above: fail
                      [0.55, 0.5, 0.58],    # all below but inside the band: uncertain
                      [0.8, 0.9, 0.55]])    # mean 0.75 above the band, one fold below: uncertain
    result = QCResult(p_bad=folds.mean(axis=1), p_bad_std=folds.std(axis=1), p_artifacts={}, p_bad_folds=folds)
    assert result.verdicts(0.6, (0.5, 0.7)) == ["pass", "uncertain", "fail", "uncertain", "uncertain"]


def test_reason_says_which_evidence_set_the_verdict():
    """Each verdict comes with one line naming what set it: the network's p_bad against the
    threshold or the band, the fold models' split, or a native detector's score against its
    calibration (the detector's own range, never an artifact name it might not have)."""
    from bidsqc.model.ensemble import QCResult

    folds = np.array([[0.1, 0.2, 0.15], [0.2, 0.3, 0.9], [0.9, 0.95, 0.85], [0.55, 0.5, 0.58]])
    result = QCResult(p_bad=folds.mean(axis=1), p_bad_std=folds.std(axis=1), p_artifacts={}, p_bad_folds=folds)
    band = (0.5, 0.7)
    reasons = [result.reason(i, 0.6, band, float(result.p_bad[i])) for i in range(4)]
    assert reasons[0] == ("pass: the network's p_bad 0.15 is below the uncertain band (0.5); every native "
                          "detector score inside its clean training range")
    assert reasons[1].startswith("uncertain: the fold models disagree, 1 of 3 at or above the threshold 0.6")
    assert reasons[2] == "fail: the network's p_bad 0.90 is at or above the threshold 0.6"
    assert reasons[3] == "uncertain: the network's p_bad 0.54 is inside the uncertain band 0.5-0.7"
    assert result.reason(0, 0.6, band, 0.15, detectors=False).endswith("no native detector applied")
    # a detector that raised p_bad: its score and calibration, in the output table's column name
    calibration = {"threshold": 2.0, "low": 1.75, "high": 2.3}
    raised = QCResult(p_bad=np.array([0.95, 0.55]), p_bad_std=np.zeros(2), p_artifacts={},
                      p_bad_folds=np.array([[0.95, 0.95, 0.95], [0.55, 0.55, 0.55]]))
    assert raised.reason(0, 0.6, band, 0.1, "spike", 4.1, calibration) == (
        "fail: spike_score 4.1 is at or above its threshold 2 (clean training scans up to 1.75, simulated "
        "artifacts from 2.3)")
    assert raised.reason(1, 0.6, band, 0.1, "bad_slices", 1.8, calibration).startswith(
        "uncertain: slice_score 1.8 is above its clean range and below its threshold 2 ")


def test_uncertain_band_leaves_room_for_pass_and_fail():
    """The band is +-0.15 around 0.5 and narrows in log-odds towards 0 and 1: around a
    threshold of 0.86 a +-0.15 band would reach 1 and make `fail` unreachable."""
    from bidsqc.model.ensemble import (UNCERTAIN_HALF_WIDTH_LOGIT, QCResult, band_half_width_logit,
                                       uncertain_band)

    assert uncertain_band(0.5) == (0.35, 0.65)
    for threshold in (0.02, 0.3, 0.68, 0.86, 0.97):
        low, high = uncertain_band(threshold)
        assert 0 < low < threshold < high < 1
        assert band_half_width_logit((low, high)) == pytest.approx(UNCERTAIN_HALF_WIDTH_LOGIT, abs=0.02)
    folds = np.array([[0.99, 0.98, 0.99], [0.1, 0.05, 0.08]])
    result = QCResult(p_bad=folds.mean(axis=1), p_bad_std=folds.std(axis=1), p_artifacts={}, p_bad_folds=folds)
    assert result.verdicts(0.86, uncertain_band(0.86)) == ["fail", "pass"]
    assert result.verdicts(0.86, (0.71, 1.0)) == ["uncertain", "pass"]  # the clipped band of old
    # a band moved to another threshold keeps its width in log-odds
    wide = uncertain_band(0.6, 1.0)
    assert band_half_width_logit(uncertain_band(0.95, band_half_width_logit(wide))) == pytest.approx(1.0, abs=0.02)
