"""Grad-CAM (Selvaraju et al. 2017): where in a poster a model looked for a genre.

The heat map is the ReLU of the last convolutional feature map weighted by the mean
gradient of the genre's score over it, upsampled to the poster. It works for every
architecture: the from-scratch CNN's last Conv2D, a transfer model's or a probe's frozen
base (a nested model whose output is the last feature map the head sees), and a probe
on several bases (their maps added).

`captioned_overlay` draws the heat map over the poster at the poster's own aspect ratio
(the model sees a square, squashed copy; its heat map is stretched back to the poster's
shape, so each heat cell lands on the part of the poster it came from) with a caption
band below it naming the genre and its probability.
"""

from __future__ import annotations

import keras
import numpy as np

from postergenre.training.models import all_layers, unmirrored


def conv_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every Conv2D layer, nested models included, in network order."""
    return [layer for layer in all_layers(model) if isinstance(layer, keras.layers.Conv2D)]


def feature_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The top-level layers whose spatial (4-D) output the heat map reads: the last
    Conv2D when one sits at the top level, else every nested base that ends in one (one
    for a transfer model or a probe, one per backbone for a probe on several)."""
    candidates = [layer for layer in model.layers[1:]
                  if len(getattr(getattr(layer, "output", None), "shape", None) or ()) == 4]
    convs = [layer for layer in candidates if isinstance(layer, keras.layers.Conv2D)]
    if convs:
        return convs[-1:]
    bases = [layer for layer in candidates if isinstance(layer, keras.Model)]
    if not bases:
        raise ValueError(f"model {model.name!r} has no spatial feature map for Grad-CAM")
    return bases


def gradcam(model: keras.Model, images: np.ndarray, genre_indices: np.ndarray) -> np.ndarray:
    """Heat maps in [0, 1], (n, H, W), of each image for its genre index (of the poster
    as it is, where the model also averages with its mirror image).

    The model runs through its own graph (what its call does), each feature layer's
    output watched as it is made. With several bases, each one's map (ReLU, upsampled)
    is added: the probe's score is a sum over its bases' pooled features.
    """
    import tensorflow as tf

    model = unmirrored(model)
    chosen_layers = feature_layers(model)
    x = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
    features: list[tf.Tensor] = []
    tape = tf.GradientTape()

    def watched(operation):
        def call(*args, **kwargs):
            if isinstance(operation, keras.layers.Layer):
                kwargs["training"] = False
            out = operation(*args, **kwargs)
            if operation in chosen_layers:
                tape.watch(out)
                features.append(out)
            return out
        return call

    with tape:
        scores = model._run_through_graph(x, operation_fn=watched)
        chosen = tf.gather(scores, np.asarray(genre_indices), axis=1, batch_dims=1)
    maps = []
    for grads, feature in zip(tape.gradient(chosen, features), features, strict=True):
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        one = tf.nn.relu(tf.reduce_sum(weights * feature, axis=-1))[..., None]
        maps.append(tf.image.resize(one, x.shape[1:3], method="bilinear")[..., 0].numpy())
    cam = np.sum(maps, axis=0)
    peak = cam.reshape(len(cam), -1).max(axis=1)
    return cam / np.where(peak > 0, peak, 1.0)[:, None, None]


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The poster (RGB uint8) with the heat map blended over it in the `jet` colours."""
    import cv2
    from matplotlib import colormaps

    heat = cv2.resize(heat.astype(np.float32), (rgb.shape[1], rgb.shape[0]))
    coloured = colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255
    return np.clip((1 - alpha) * rgb + alpha * coloured, 0, 255).astype(np.uint8)


# Display size of a captioned overlay: posters are scaled to this height (their width
# follows their aspect ratio), so a 48x72 demo poster and a 2000x3000 scan read alike.
OVERLAY_HEIGHT = 384
CAPTION_BACKGROUND = (255, 255, 255)
CAPTION_TEXT = (20, 20, 20)


def captioned_overlay(poster: np.ndarray, heat: np.ndarray, caption: str,
                      height: int = OVERLAY_HEIGHT) -> np.ndarray:
    """The poster (RGB uint8, any shape) scaled to `height` at its own aspect ratio, the
    heat map (any shape, stretched to the poster's) over it, and `caption` in a band below.

    Returns RGB uint8 of shape (height + band, round(width * height / poster height), 3).
    """
    import cv2

    rows, cols = poster.shape[:2]
    width = max(1, round(cols * height / rows))
    scaled = cv2.resize(poster, (width, height),
                        interpolation=cv2.INTER_AREA if rows > height else cv2.INTER_CUBIC)
    blended = overlay(scaled, heat)
    band = caption_band(caption, width, max(24, round(height * 0.08)))
    return np.concatenate([blended, band], axis=0)


def caption_band(text: str, width: int, height: int) -> np.ndarray:
    """A white band of `width` x `height` with `text` in dark letters, shrunk to fit."""
    import cv2

    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
    band = height
    scale = band / 40
    (text_width, text_height), _ = cv2.getTextSize(text, font, scale, thickness)
    if text_width > width - 8:  # a long genre name on a narrow poster: smaller letters
        scale *= (width - 8) / text_width
        (text_width, text_height), _ = cv2.getTextSize(text, font, scale, thickness)
    image = np.full((band, width, 3), CAPTION_BACKGROUND, dtype=np.uint8)
    origin = (max(4, (width - text_width) // 2), (band + text_height) // 2)
    cv2.putText(image, text, origin, font, scale, CAPTION_TEXT, thickness, cv2.LINE_AA)
    return image
