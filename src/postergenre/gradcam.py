"""Grad-CAM (Selvaraju et al. 2017): where in a poster a model looked for a genre.

The heat map is the ReLU of the last convolutional feature map weighted by the mean
gradient of the genre's score over it, upsampled to the poster. It works for both
architectures: the from-scratch CNN's last Conv2D, and the VGG16 model's frozen base
(a nested model whose output is the last feature map the head sees).
"""

from __future__ import annotations

import keras
import numpy as np


def conv_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every Conv2D layer, nested models included, in network order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(conv_layers(layer))
    return found


def feature_layer(model: keras.Model) -> keras.layers.Layer:
    """The model's last top-level layer with a spatial (4-D) output: the last Conv2D
    when it sits at the top level, else the nested base that ends in one."""
    candidates = [layer for layer in model.layers[1:]
                  if len(getattr(layer, "output", None).shape or ()) == 4]
    convs = [layer for layer in candidates if isinstance(layer, keras.layers.Conv2D)]
    if convs:
        return convs[-1]
    if not candidates:
        raise ValueError(f"model {model.name!r} has no spatial feature map for Grad-CAM")
    return candidates[-1]


def _chain(model: keras.Model, layer: keras.layers.Layer, x):
    """(feature map, scores) by running the top-level layers one after another.

    Both architectures are chains of top-level layers. Running them in order (instead of
    building a probe model from inner tensors) also works when a nested base reuses the
    outer input's name, which Keras refuses in a new functional model.
    """
    h, features = x, None
    for current in model.layers[1:]:
        h = current(h, training=False)
        if current is layer:
            features = h
    return features, h


def gradcam(model: keras.Model, images: np.ndarray, genre_indices: np.ndarray) -> np.ndarray:
    """Heat maps in [0, 1], (n, H, W), of each image for its genre index."""
    import tensorflow as tf

    layer = feature_layer(model)
    x = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
    with tf.GradientTape() as tape:
        features, scores = _chain(model, layer, x)
        tape.watch(features)
        chosen = tf.gather(scores, np.asarray(genre_indices), axis=1, batch_dims=1)
    # The chain must be the model: a branching architecture would give other scores.
    expected = model(x, training=False)
    if not np.allclose(scores.numpy(), np.asarray(expected), atol=1e-5):
        raise ValueError(f"model {model.name!r} is not a chain of layers: no Grad-CAM")
    grads = tape.gradient(chosen, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[..., None]
    cam = tf.image.resize(cam, x.shape[1:3], method="bilinear")[..., 0].numpy()
    peak = cam.reshape(len(cam), -1).max(axis=1)
    return cam / np.where(peak > 0, peak, 1.0)[:, None, None]


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The poster (RGB uint8) with the heat map blended over it in the `jet` colours."""
    import cv2
    from matplotlib import colormaps

    heat = cv2.resize(heat.astype(np.float32), (rgb.shape[1], rgb.shape[0]))
    coloured = colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255
    return np.clip((1 - alpha) * rgb + alpha * coloured, 0, 255).astype(np.uint8)
