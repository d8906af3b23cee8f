"""Where the ensemble's evidence is: Grad-CAM (Selvaraju et al. 2017) of each fold model's
p_bad on its last convolution, averaged over the folds, on the model grid.

    saliency = gradcam(ensemble, volume)  # the model grid's shape, 0-1
"""

import numpy as np
from scipy import ndimage

_PROBES = {}


def last_conv(model):
    """The last Conv3D layer of a fold model."""
    import keras

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv3D)]
    if not convs:
        raise ValueError(f"model {model.name} has no Conv3D layer")
    return convs[-1]


def _probe(model):
    """A compiled function giving the last convolution's maps and the gradient of p_bad over
    them, built once per fold model (tracing it costs a few tenths of a second; a call, a few
    hundredths)."""
    import keras
    import tensorflow as tf

    if id(model) not in _PROBES:
        probe = keras.Model(model.inputs, [last_conv(model).output, model.output["p_bad"]])

        @tf.function(reduce_retracing=True)
        def maps_and_gradients(x):
            with tf.GradientTape() as tape:
                features, p_bad = probe(x, training=False)
                target = tf.reduce_sum(p_bad)
            return features, tape.gradient(target, features)

        _PROBES[id(model)] = (model, maps_and_gradients)  # the model kept alive, so its id is not reused
    return _PROBES[id(model)][1]


def gradcam(ensemble, volume):
    """Grad-CAM of p_bad for one z-scored ``volume`` on the model grid: per fold, the last
    convolution's feature maps weighted by the mean gradient of p_bad over each map, summed,
    kept where positive, upsampled to the grid and scaled to its maximum; then the mean over
    the folds, 0 outside the model's input mask. Dropout stays off (one deterministic pass)."""
    import tensorflow as tf

    volume = np.asarray(volume, np.float32)
    x = tf.convert_to_tensor(volume[None, ..., None])
    maps = []
    for model in ensemble.models:
        features, grads = _probe(model)(x)
        weights = tf.reduce_mean(grads, axis=(1, 2, 3), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[0].numpy()
        cam = ndimage.zoom(cam, [g / c for g, c in zip(volume.shape, cam.shape)], order=1)
        peak = float(cam.max())
        maps.append(cam / peak if peak > 0 else cam)
    out = np.mean(maps, axis=0).astype(np.float32)
    return np.where(ensemble.mask, out, 0.0)
