"""The architectures, every size a parameter, and the weighted loss.

The study's CNN from scratch (optionally with batch normalisation), the transfer model's
heads (`gap`: pooled features, batch norm, dropout, one sigmoid layer; `flatten`: the
study's two dense layers) joined to a frozen base (training.bases), and the linear probe
(pooled features, standardised, one logistic regression per genre). Every model takes
raw RGB pixels in [0, 255] (float) and scales them itself, so the saved model needs no
preprocessing code beside it.

A saved model.keras names the module of each custom class it holds (VggPreprocess,
WeightedBinaryCrossentropy): they stay here, where every saved model says they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers, ops

from postergenre.configs import HEADS, ScratchConfig
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


@keras.saving.register_keras_serializable(package="postergenre")
class Mirror(layers.Layer):
    """The poster flipped left to right (batch, height, width, channels)."""

    def call(self, inputs):
        return ops.flip(inputs, axis=2)


def with_mirror(network: keras.Model) -> keras.Model:
    """`network`'s probabilities averaged over the poster and its mirror image: test-time
    augmentation inside the model, so evaluate, `predict`, `batch-predict` and the
    SavedModel all score the same function. Grad-CAM explains `unmirrored(model)`."""
    inputs = keras.Input(network.input_shape[1:], name="poster")
    mirrored = Mirror(name="mirror", dtype="float32")(inputs)
    average = layers.Average(name="mirror_average", dtype="float32")
    return keras.Model(inputs, average([network(inputs), network(mirrored)]), name=network.name)


def unmirrored(model: keras.Model) -> keras.Model:
    """The network inside a `with_mirror` model; any other model as it is."""
    if any(isinstance(layer, Mirror) for layer in model.layers):
        return next(layer for layer in model.layers if isinstance(layer, keras.Model))
    return model


def all_layers(model: keras.Model) -> list[layers.Layer]:
    """Every layer of `model` in network order, a nested model (a transfer model's base)
    followed by its own layers."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found += all_layers(layer)
    return found


def build_scratch_cnn(image_size: int, config: ScratchConfig, name: str = "scratch_cnn"
                      ) -> keras.Model:
    """The study's VGG-like CNN: 22,866,707 parameters at the study's sizes (128 px,
    64-128 filters, 256 dense units). With `batch_norm`, every conv and dense layer drops
    its bias and is followed by batch normalisation before its ReLU."""
    conv1_filters, conv2_filters = config.conv1_filters, config.conv2_filters
    dense_units, input_dropout = config.dense_units, config.input_dropout
    conv_dropout, dense_dropout = config.conv_dropout, config.dense_dropout
    bn = config.batch_norm

    def activated(x, layer: layers.Layer):
        if not bn:
            return layer(x)
        x = layer(x)
        x = layers.BatchNormalization(name=f"{layer.name}_bn")(x)
        return layers.ReLU(name=f"{layer.name}_relu")(x)

    relu = None if bn else "relu"
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="scale")(inputs)
    x = layers.Dropout(input_dropout, name="input_dropout")(x)
    for i in range(3):
        x = activated(x, layers.Conv2D(conv1_filters, 5, activation=relu, use_bias=not bn,
                                       name=f"conv1_{i + 1}"))
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Dropout(conv_dropout, name="dropout1")(x)
    for i in range(3):
        x = activated(x, layers.Conv2D(conv2_filters, 3, activation=relu, use_bias=not bn,
                                       name=f"conv2_{i + 1}"))
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Dropout(conv_dropout, name="dropout2")(x)
    x = layers.Flatten(name="flatten")(x)
    for i in range(3):
        x = activated(x, layers.Dense(dense_units, activation=relu, use_bias=not bn,
                                      name=f"dense{i + 1}"))
        x = layers.Dropout(dense_dropout, name=f"dense_dropout{i + 1}")(x)
    # float32 output even under mixed precision: sigmoid and the loss stay stable.
    outputs = layers.Dense(NUM_GENRES, activation="sigmoid", dtype="float32", name="genres")(x)
    return keras.Model(inputs, outputs, name=name)


def _genre_layer(l2: float = 0.0, name: str = "genres") -> layers.Dense:
    # float32 output even under mixed precision: sigmoid and the loss stay stable.
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    return layers.Dense(NUM_GENRES, activation="sigmoid", dtype="float32",
                        kernel_regularizer=regularizer, name=name)


def build_head(feature_shape: Sequence[int], head: str = "gap", dense_units: int = 256,
               dropout: float = 0.5, l2: float = 0.0) -> keras.Model:
    """A transfer head on the base's feature map: a parameter-free `pool` layer, then a
    `classifier` model on the pooled vector (what the feature cache trains).

    gap: GlobalAveragePooling, BatchNormalization, Dropout, 19 sigmoid (on Lite0's 1280
    channels: 26,899 trainable weights). flatten: the study's Flatten, dense, Dropout, dense,
    Dropout, 19 sigmoid (the study: 4096 units, dropout 0.5).
    """
    inputs = keras.Input(tuple(feature_shape), name="base_features")
    if head == "gap":
        pool: layers.Layer = layers.GlobalAveragePooling2D(name="pool")
    elif head == "flatten":
        pool = layers.Flatten(name="pool")
    else:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    pooled = pool(inputs)
    vector = keras.Input(tuple(pooled.shape[1:]), name="pooled_features")
    if head == "gap":
        x = layers.BatchNormalization(name="head_bn")(vector)
        x = layers.Dropout(dropout, name="head_dropout")(x)
    else:
        x = layers.Dense(dense_units, activation="relu", name="fc1")(vector)
        x = layers.Dropout(dropout, name="fc1_dropout")(x)
        x = layers.Dense(dense_units, activation="relu", name="fc2")(x)
        x = layers.Dropout(dropout, name="fc2_dropout")(x)
    classifier = keras.Model(vector, _genre_layer(l2)(x), name="classifier")
    return keras.Model(inputs, classifier(pooled), name=f"{head}_head")


def head_parts(head: keras.Model) -> tuple[layers.Layer, keras.Model]:
    """(pool, classifier) of a `build_head` head."""
    return head.get_layer("pool"), head.get_layer("classifier")


def build_dense_head(feature_shape: Sequence[int], dense_units: int, dropout: float = 0.5
                     ) -> keras.Model:
    """The study's dense head: Flatten, dense, Dropout, dense, Dropout, 19 sigmoid (the
    study: 4096 units, dropout 0.5)."""
    return build_head(feature_shape, "flatten", dense_units, dropout)


def join_base_and_head(base: keras.Model, head: keras.Model, name: str = "transfer"
                       ) -> keras.Model:
    """One model from raw pixels to 19 probabilities, for saving and serving."""
    inputs = keras.Input(base.input_shape[1:], name="image")
    return keras.Model(inputs, head(base(inputs)), name=name)


@keras.saving.register_keras_serializable(package="postergenre")
class ToModelSize(layers.Layer):
    """data.shards.to_model_size as a layer: a probe on several backbones resizes its one
    input to each backbone's side inside the model, with the project's one resize."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, inputs):
        from postergenre.data.shards import to_model_size

        return to_model_size(inputs, self.size)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "size": self.size}


def pooled_features(bases: Sequence[keras.Model], image_size: int | None = None
                    ) -> keras.Model:
    """Posters at `image_size` (default: the first base's side) -> each base's globally
    average-pooled output, one output per base, in order: what the linear probe fits on
    and what its saved model computes (build_linear_probe), the same layers.

    A base of another side gets the posters resized to it (ToModelSize). One base keeps
    the probe's original layout: image -> base -> `pool`.
    """
    image_size = image_size or int(bases[0].input_shape[1])
    inputs = keras.Input((image_size, image_size, 3), name="image")
    pooled = []
    for base in bases:
        side = int(base.input_shape[1])
        x = inputs if side == image_size else ToModelSize(side, name=f"{base.name}_size")(inputs)
        pool_name = "pool" if len(bases) == 1 else f"{base.name}_pool"
        pooled.append(layers.GlobalAveragePooling2D(name=pool_name)(base(x)))
    return keras.Model(inputs, pooled, name="pooled_features")


def build_linear_probe(bases: Sequence[keras.Model], mean: np.ndarray, variance: np.ndarray,
                       coef: np.ndarray, intercept: np.ndarray, name: str = "linear_probe",
                       image_size: int | None = None) -> keras.Model:
    """pooled_features(bases) -> (several: concatenated) -> Normalization(mean, variance)
    -> Dense(19, sigmoid) with a fitted logistic regression's weights: `coef` (19,
    features) and `intercept` (19,), as scikit-learn's `coef_` / `intercept_` stacked over
    the genres.

    A feature with no variance gets variance 1 (as scikit-learn's StandardScaler does):
    Keras would divide by its epsilon, and a test poster off the constant would explode.
    """
    coef = np.asarray(coef, dtype=np.float32)
    variance = np.where(np.asarray(variance) > 1e-12, variance, 1.0).astype(np.float32)
    features = pooled_features(bases, image_size)
    x = features.outputs[0] if len(bases) == 1 else \
        layers.Concatenate(name="features")(features.outputs)
    x = layers.Normalization(mean=np.asarray(mean, dtype=np.float32), variance=variance,
                             dtype="float32", name="standardise")(x)
    genres = _genre_layer(name="genres")
    outputs = genres(x)
    genres.set_weights([coef.T, np.asarray(intercept, dtype=np.float32)])
    return keras.Model(features.inputs, outputs, name=name)
