"""The posters a model trains on, from the shards: resized, cached, augmented.

`image_size` lets a model train at its own size: the shards are resized in the input
pipeline (evaluate does the same). The CNN's posters are decoded once and kept in memory
as uint8 (shuffled, resized and augmented after the cache, each epoch anew).
"""

from __future__ import annotations

import os

import tensorflow as tf

from postergenre.configs import LinearProbeConfig, TrainingConfig
from postergenre.data.shards import dataset, read_manifest, to_model_size


def input_size(config: TrainingConfig | LinearProbeConfig, manifest: dict) -> int:
    """The square side the model takes: its own `image_size`, or the shards'."""
    return int(config.image_size or manifest["image_size"])


def image_batches(prepared_dir: str | os.PathLike[str], split: str, batch_size: int,
                  size: int, shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
    """A split's (image, labels) batches at `size` pixels (shards of another size are
    resized with area interpolation, as evaluate does)."""
    return dataset(prepared_dir, split, batch_size, shuffle=shuffle, seed=seed).map(
        lambda x, y: (to_model_size(x, size), y), num_parallel_calls=tf.data.AUTOTUNE)


CROP_SCALE = 0.9  # the `crop` transform keeps this share of each side
BRIGHTNESS = 0.1  # `brightness` adds up to this share of the [0, 255] range
CONTRAST = 0.2  # `contrast` scales each poster's deviation from its mean by 1 +- this


def augment_batch(images: tf.Tensor, seed: tf.Tensor, transforms: tuple[str, ...]
                  ) -> tf.Tensor:
    """Random transforms of a batch of float32 RGB posters in [0, 255], one draw per
    poster, from a (2,) int seed (stateless: the same seed, the same batch)."""
    if not transforms:
        return images
    n = tf.shape(images)[0]
    size = tf.shape(images)[1:3]

    def uniform(shape, op: int, low: float, high: float) -> tf.Tensor:
        return tf.random.stateless_uniform(shape, seed + tf.constant([0, op], tf.int64),
                                           low, high)

    if "crop" in transforms:
        corner = uniform([n, 2], 1, 0.0, 1.0 - CROP_SCALE)
        boxes = tf.concat([corner, corner + CROP_SCALE], axis=1)
        images = tf.image.crop_and_resize(images, boxes, tf.range(n), size)
    if "flip" in transforms:
        flip = uniform([n, 1, 1, 1], 2, 0.0, 1.0) < 0.5
        images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    if "contrast" in transforms:
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        images = (images - mean) * uniform([n, 1, 1, 1], 3, 1 - CONTRAST, 1 + CONTRAST) + mean
    if "brightness" in transforms:
        images = images + uniform([n, 1, 1, 1], 4, -BRIGHTNESS, BRIGHTNESS) * 255.0
    return tf.clip_by_value(images, 0.0, 255.0)


def cached_images(prepared_dir: str | os.PathLike[str], split: str, batch_size: int,
                  size: int, shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
    """A split's (image, labels) batches as `image_batches` gives them, decoded only once.

    The first epoch decodes the shards' JPEGs and keeps the posters in memory as uint8
    (records x side^2 x 3 bytes: 1.8 GB for 36k posters at 128 px, a quarter of float32);
    later epochs read them from there. Shuffling (each epoch anew, from `seed`) and the
    resize to `size` come after the cache, augmentation after that (`augmented`): every
    epoch still sees its own order and transforms.
    """
    manifest = read_manifest(prepared_dir)
    records = int(manifest["counts"][split]["records"])
    data = (dataset(prepared_dir, split, batch_size)
            # The shards decode to uint8: the cast back from float32 is exact.
            .map(lambda x, y: (tf.cast(x, tf.uint8), y), num_parallel_calls=tf.data.AUTOTUNE)
            # A known length: Keras then knows the steps of an epoch (and
            # steps_per_execution never runs past the end).
            .unbatch().apply(tf.data.experimental.assert_cardinality(records)).cache())
    if shuffle:
        data = data.shuffle(max(records, 1), seed=seed, reshuffle_each_iteration=True)

    def to_float(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return to_model_size(tf.cast(x, tf.float32), size), y

    return (data.batch(batch_size).map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def augmented(data: tf.data.Dataset, transforms: tuple[str, ...], seed: int) -> tf.data.Dataset:
    """`data`'s batches with random transforms, drawn anew every epoch (reproducibly)."""
    if not transforms:
        return data
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return (tf.data.Dataset.zip(data, seeds)
            .map(lambda batch, s: (augment_batch(batch[0], s, transforms), batch[1]),
                 num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))
