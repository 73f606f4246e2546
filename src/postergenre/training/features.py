"""The feature cache: a frozen base's output for every poster, computed once.

The transfer models' features are written to .npy files in the partial model folder and
streamed from them batch by batch, never held as one array nor embedded in the dataset's
graph.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from postergenre.training.inputs import image_batches


def base_features(base: keras.Model, prepared_dir: str | os.PathLike[str], split: str,
                  batch_size: int, size: int | None = None) -> np.ndarray:
    """The frozen base's output for every record of a split, in shard order (resized to
    `size`, the base's input, when the shards are another size)."""
    size = size or int(base.input_shape[1])
    images_only = image_batches(prepared_dir, split, batch_size, size).map(lambda x, y: x)
    return base.predict(images_only, verbose=0)


# The feature cache's files, inside the partial model folder (on the output's volume, not
# in a small /tmp); removed before the folder is swapped into place.
FEATURES_DIR = ".features"


def write_features(model: keras.Model, images: tf.data.Dataset, records: int,
                   path: str | os.PathLike[str]) -> np.ndarray:
    """`model`'s output for every batch of `images`, written batch by batch into the .npy
    file `path` and returned memory-mapped (read-only): memory stays at one batch
    however many posters there are (VGG16's trunk at 224 px and 36k posters is 14 GB)."""
    out, row = None, 0
    for batch in images:
        values = np.asarray(model.predict_on_batch(batch))
        if values.dtype not in (np.float16, np.float32):
            # A mixed_bfloat16 base's output: .npy has no bfloat16 (the file would read
            # back as raw 2-byte voids), so the cache keeps it as float32.
            values = values.astype(np.float32)
        if out is None:
            out = np.lib.format.open_memmap(path, mode="w+", dtype=values.dtype,
                                            shape=(records, *values.shape[1:]))
        if row + len(values) > records:
            raise ValueError(f"{path}: more than the {records} records expected")
        out[row:row + len(values)] = values
        row += len(values)
    if out is None or row != records:
        raise ValueError(f"{path}: {row} records of features, expected {records}")
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def split_features(model: keras.Model, prepared_dir: str | os.PathLike[str], split: str,
                   batch_size: int, size: int, records: int, folder: Path) -> np.ndarray:
    """The frozen `model`'s output for a split's posters, in shard order, as a file."""
    images = image_batches(prepared_dir, split, batch_size, size).map(lambda x, y: x)
    return write_features(model, images, records, folder / f"{model.name}-{split}.npy")


def feature_batches(features: np.ndarray, labels: np.ndarray, batch_size: int,
                    shuffle_seed: int | None = None) -> tf.data.Dataset:
    """(features, labels) batches streamed from `features` (a memory-mapped .npy), in
    order or shuffled anew each epoch from `shuffle_seed`.

    The graph holds only the row numbers and their shuffle: the rows are read per batch
    (one fancy index into the memmap), so the features never become a graph constant
    (from_tensor_slices over an array would embed it, and stop at TensorFlow's 2 GB
    limit). The order is the one from_tensor_slices(...).shuffle(n, seed) gives: the
    shuffle depends on the seed and the number of elements, not on what they hold.
    """
    n = len(labels)
    targets = np.asarray(labels, dtype="float32")
    order = tf.data.Dataset.range(n)
    if shuffle_seed is not None:
        order = order.shuffle(n, seed=shuffle_seed)

    def gather(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(features[rows]), targets[rows]

    dtype = tf.as_dtype(features.dtype)

    def read(rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x, y = tf.numpy_function(gather, [rows], (dtype, tf.float32), stateful=False)
        x.set_shape((None, *features.shape[1:]))
        y.set_shape((None, targets.shape[1]))
        return x, y

    return order.batch(batch_size).map(read).prefetch(tf.data.AUTOTUNE)
