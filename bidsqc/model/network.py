"""The founding study's 3D CNN with a ``p_bad`` head and one sigmoid per artifact type.

Dropout layers are ``MCDropout``: always on, so Monte Carlo dropout at inference needs
no ``training=True`` call and BatchNorm stays in inference mode.
"""

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="bidsqc")
class MCDropout(layers.Dropout):
    """Dropout that is active at inference too (Monte Carlo dropout)."""

    def call(self, inputs, training=None):
        return super().call(inputs, training=True)


def build_network(input_shape, n_artifacts, levels=4, base_filters=16, dropout=0.2,
                  dense_dropout=0.1, dense_units=(256, 64), bn_momentum=0.9):
    """Build the network: ``levels`` x [BatchNorm -> Conv3D(base*2^k, 3, ReLU) -> MaxPool(2)
    -> MCDropout(dropout)] -> MaxPool(2) -> Flatten -> Dense 256 -> Dense 64 -> MCDropout
    -> heads ``p_bad`` (1 sigmoid) and ``artifacts`` (``n_artifacts`` sigmoids)."""
    inputs = keras.Input(shape=tuple(input_shape) + (1,), name="t1w")
    x = inputs
    for level in range(levels):
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"bn{level}")(x)
        x = layers.Conv3D(base_filters * 2 ** level, 3, padding="same", activation="relu",
                          name=f"conv{level}")(x)
        x = layers.MaxPooling3D(2, padding="same", name=f"pool{level}")(x)
        x = MCDropout(dropout, name=f"drop{level}")(x)
    x = layers.MaxPooling3D(2, padding="same", name="pool_final")(x)
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(dense_units):
        x = layers.Dense(units, activation="relu", name=f"dense{i}")(x)
    x = MCDropout(dense_dropout, name="drop_dense")(x)
    p_bad = layers.Dense(1, activation="sigmoid", name="p_bad")(x)
    artifacts = layers.Dense(n_artifacts, activation="sigmoid", name="artifacts")(x)
    return keras.Model(inputs, {"p_bad": p_bad, "artifacts": artifacts}, name="bidsqc_cnn")
