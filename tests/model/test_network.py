"""The founding network: layout, Monte Carlo dropout with BatchNorm in inference mode, losses."""

import keras
import numpy as np
import pytest

from bidsqc.model.network import MCDropout, build_network
from bidsqc.training.losses import dice_loss, get_loss


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
