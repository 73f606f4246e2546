"""The study's two architectures, every size a parameter, and the weighted loss.

Both models take raw RGB pixels in [0, 255] (float) and scale them themselves, so the
saved model needs no preprocessing code beside it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
from keras import layers, ops

from postergenre.genres import NUM_GENRES

# ImageNet channel means in BGR order, as VGG16's original ("caffe") preprocessing uses.
VGG_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="postergenre")
class VggPreprocess(layers.Layer):
    """RGB [0, 255] -> BGR, ImageNet-mean-centred: what VGG16's weights expect."""

    def call(self, inputs):
        bgr = ops.flip(inputs, axis=-1)
        return bgr - ops.convert_to_tensor(VGG_BGR_MEAN, dtype=inputs.dtype)


@keras.saving.register_keras_serializable(package="postergenre")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy with one weight per label for its positive examples.

    Keras' `class_weight` weights whole samples by a single class, which is wrong for
    multi-label data; here the rare genre's positives count `weight` times.
    """

    def __init__(self, positive_weights: Sequence[float], name: str = "weighted_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.positive_weights = [float(w) for w in positive_weights]

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        weights = ops.convert_to_tensor(self.positive_weights, dtype=y_pred.dtype)
        eps = keras.config.epsilon()
        p = ops.clip(y_pred, eps, 1.0 - eps)
        per_label = -(weights * y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
        return ops.mean(per_label, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "positive_weights": self.positive_weights}


def build_scratch_cnn(
    image_size: int = 128,
    conv1_filters: int = 64,
    conv2_filters: int = 128,
    dense_units: int = 256,
    input_dropout: float = 0.2,
    conv_dropout: float = 0.25,
    dense_dropout: float = 0.5,
) -> keras.Model:
    """The study's VGG-like CNN: 22,866,707 parameters at its default sizes (128 px)."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="scale")(inputs)
    x = layers.Dropout(input_dropout, name="input_dropout")(x)
    for i in range(3):
        x = layers.Conv2D(conv1_filters, 5, activation="relu", name=f"conv1_{i + 1}")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Dropout(conv_dropout, name="dropout1")(x)
    for i in range(3):
        x = layers.Conv2D(conv2_filters, 3, activation="relu", name=f"conv2_{i + 1}")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Dropout(conv_dropout, name="dropout2")(x)
    x = layers.Flatten(name="flatten")(x)
    for i in range(3):
        x = layers.Dense(dense_units, activation="relu", name=f"dense{i + 1}")(x)
        x = layers.Dropout(dense_dropout, name=f"dense_dropout{i + 1}")(x)
    outputs = layers.Dense(NUM_GENRES, activation="sigmoid", name="genres")(x)
    return keras.Model(inputs, outputs, name="scratch_cnn")


def resolve_vgg16_weights(weights: str | None) -> str | None:
    """`imagenet` (Keras downloads it), `none`, or a local weights file."""
    if weights is None or str(weights).lower() in ("none", ""):
        return None
    if weights == "imagenet":
        return "imagenet"
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"VGG16 weights file not found: {weights} (use 'imagenet', 'none' or a file path)"
        )
    return weights


def build_vgg16_base(image_size: int = 128, weights: str | None = "imagenet") -> keras.Model:
    """VGG16's convolutional base, frozen, with its own input scaling in front."""
    resolved = resolve_vgg16_weights(weights)
    keras_weights = "imagenet" if resolved == "imagenet" else None
    vgg = keras.applications.VGG16(
        include_top=False, weights=keras_weights, input_shape=(image_size, image_size, 3)
    )
    if resolved not in (None, "imagenet"):
        vgg.load_weights(resolved)
    vgg.trainable = False
    inputs = keras.Input((image_size, image_size, 3), name="image")
    features = vgg(VggPreprocess(name="vgg_preprocess")(inputs), training=False)
    return keras.Model(inputs, features, name="vgg16_base")


def build_vgg16_head(
    feature_shape: Sequence[int], dense_units: int = 4096, dropout: float = 0.5
) -> keras.Model:
    """The study's dense head: Flatten, 4096, Dropout, 4096, Dropout, 19 sigmoid."""
    inputs = keras.Input(tuple(feature_shape), name="vgg16_features")
    x = layers.Flatten(name="flatten")(inputs)
    x = layers.Dense(dense_units, activation="relu", name="fc1")(x)
    x = layers.Dropout(dropout, name="fc1_dropout")(x)
    x = layers.Dense(dense_units, activation="relu", name="fc2")(x)
    x = layers.Dropout(dropout, name="fc2_dropout")(x)
    outputs = layers.Dense(NUM_GENRES, activation="sigmoid", name="genres")(x)
    return keras.Model(inputs, outputs, name="vgg16_head")


def join_base_and_head(base: keras.Model, head: keras.Model) -> keras.Model:
    """One model from raw pixels to 19 probabilities, for saving and serving."""
    inputs = keras.Input(base.input_shape[1:], name="image")
    return keras.Model(inputs, head(base(inputs)), name="vgg16_transfer")
