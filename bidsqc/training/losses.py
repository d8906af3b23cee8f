"""Losses: binary cross-entropy and the founding study's Dice-style class-weighted loss."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="bidsqc")
def dice_loss(y_true, y_pred, smooth=1.0):
    """Class-weighted soft Dice over the batch for both classes (bad and good), each
    weighted by the inverse square of its frequency (generalised Dice), so the rare
    class counts as much as the common one. Soft labels (mixup) are allowed."""
    y_true = ops.cast(ops.reshape(y_true, (-1,)), "float32")
    y_pred = ops.reshape(y_pred, (-1,))
    total = 0.0
    weights = 0.0
    for t, p in ((y_true, y_pred), (1.0 - y_true, 1.0 - y_pred)):
        weight = 1.0 / (ops.square(ops.sum(t)) + smooth)
        total = total + weight * (2.0 * ops.sum(t * p) + smooth * 1e-3)
        weights = weights + weight * (ops.sum(t) + ops.sum(p) + smooth * 1e-3)
    return 1.0 - total / weights


def get_loss(name):
    """Return the ``p_bad`` loss for ``name`` (``bce`` or ``dice``)."""
    if name == "bce":
        return keras.losses.BinaryCrossentropy()
    if name == "dice":
        return dice_loss
    raise ValueError(f"unknown loss {name!r}; choose bce or dice")
