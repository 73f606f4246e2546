"""TFRecord shards: how posters travel between stages, and how training reads them.

Posters move between steps as a few shard files, not one file per poster (many small
artifacts are slow in both Kubeflow and DVC). Each record is a `tf.train.Example`
holding the resized RGB poster as JPEG, its 19-label vector, its movie id, its split,
the training movie it came from (itself unless augmented) and the augmentation applied.
Readers stream records with `tf.data`, so memory stays bounded whatever the data size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from postergenre.genres import NUM_GENRES

MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class PosterRecord:
    """One training / evaluation sample as stored in a shard."""

    image_jpeg: bytes
    labels: np.ndarray
    imdb_id: str
    split: str
    origin: str
    augmentation: str = "none"


FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "labels": tf.io.FixedLenFeature([NUM_GENRES], tf.int64),
    "imdb_id": tf.io.FixedLenFeature([], tf.string),
    "split": tf.io.FixedLenFeature([], tf.string),
    "origin": tf.io.FixedLenFeature([], tf.string),
    "augmentation": tf.io.FixedLenFeature([], tf.string),
}


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def to_example(record: PosterRecord) -> bytes:
    """Serialise a record as a `tf.train.Example`."""
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": _bytes(record.image_jpeg),
                "labels": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[int(v) for v in record.labels])
                ),
                "imdb_id": _bytes(record.imdb_id.encode()),
                "split": _bytes(record.split.encode()),
                "origin": _bytes(record.origin.encode()),
                "augmentation": _bytes(record.augmentation.encode()),
            }
        )
    )
    return example.SerializeToString()


def write_shards(
    records: Iterable[PosterRecord], out_dir: str | os.PathLike[str], prefix: str, shard_size: int
) -> list[str]:
    """Write records into `<prefix>-00000.tfrecord`, ... of at most `shard_size` each."""
    if shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    writer: tf.io.TFRecordWriter | None = None
    count = 0
    try:
        for record in records:
            if count % shard_size == 0:
                if writer is not None:
                    writer.close()
                names.append(f"{prefix}-{len(names):05d}.tfrecord")
                writer = tf.io.TFRecordWriter(str(out / names[-1]))
            writer.write(to_example(record))
            count += 1
    finally:
        if writer is not None:
            writer.close()
    return names


def read_manifest(prepared_dir: str | os.PathLike[str]) -> dict:
    """The manifest `augment` writes beside the shards (sizes, counts, class weights)."""
    path = Path(prepared_dir) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {prepared_dir} the output of augment?")
    return json.loads(path.read_text())


def shard_paths(prepared_dir: str | os.PathLike[str], split: str) -> list[str]:
    manifest = read_manifest(prepared_dir)
    try:
        names = manifest["shards"][split]
    except KeyError:
        raise KeyError(f"{prepared_dir}: no shards for split {split!r}") from None
    return [str(Path(prepared_dir) / name) for name in names]


def parse_records(serialized: tf.Tensor, image_size: int) -> dict[str, tf.Tensor]:
    """Parse a batch-less serialized Example into tensors (image as RGB uint8)."""
    parsed = tf.io.parse_single_example(serialized, FEATURES)
    image = tf.io.decode_jpeg(parsed["image"], channels=3)
    parsed["image"] = tf.ensure_shape(image, [image_size, image_size, 3])
    return parsed


def dataset(
    prepared_dir: str | os.PathLike[str],
    split: str,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    with_ids: bool = False,
) -> tf.data.Dataset:
    """Stream a split as batches of (float32 image in [0, 255], float32 labels).

    Models scale their own input, so the same raw pixels feed every model and the
    exported model. With `with_ids`, batches are dicts that also carry the movie ids.
    """
    image_size = int(read_manifest(prepared_dir)["image_size"])
    files = shard_paths(prepared_dir, split)
    data = tf.data.TFRecordDataset(files)
    if shuffle:
        data = data.shuffle(buffer_size=4096, seed=seed, reshuffle_each_iteration=True)
    data = data.map(lambda s: parse_records(s, image_size), num_parallel_calls=tf.data.AUTOTUNE)

    def to_pair(parsed: dict[str, tf.Tensor]):
        image = tf.cast(parsed["image"], tf.float32)
        labels = tf.cast(parsed["labels"], tf.float32)
        if with_ids:
            return {"image": image, "labels": labels, "imdb_id": parsed["imdb_id"]}
        return image, labels

    return data.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(
        tf.data.AUTOTUNE
    )


def iter_records(prepared_dir: str | os.PathLike[str], split: str) -> Iterator[dict]:
    """Every record of a split as plain Python values (for tests and analysis)."""
    image_size = int(read_manifest(prepared_dir)["image_size"])
    for serialized in tf.data.TFRecordDataset(shard_paths(prepared_dir, split)):
        parsed = parse_records(serialized, image_size)
        yield {
            "image": parsed["image"].numpy(),
            "labels": parsed["labels"].numpy().astype(np.uint8),
            "imdb_id": parsed["imdb_id"].numpy().decode(),
            "split": parsed["split"].numpy().decode(),
            "origin": parsed["origin"].numpy().decode(),
            "augmentation": parsed["augmentation"].numpy().decode(),
        }


def labels_of(prepared_dir: str | os.PathLike[str], split: str) -> tuple[np.ndarray, list[str]]:
    """The (n, 19) label matrix and movie ids of a split, in shard order, without images."""
    features = {k: FEATURES[k] for k in ("labels", "imdb_id")}
    labels, ids = [], []
    for serialized in tf.data.TFRecordDataset(shard_paths(prepared_dir, split)).batch(1024):
        parsed = tf.io.parse_example(serialized, features)
        labels.append(parsed["labels"].numpy().astype(np.uint8))
        ids.extend(v.decode() for v in parsed["imdb_id"].numpy())
    matrix = np.concatenate(labels) if labels else np.zeros((0, NUM_GENRES), np.uint8)
    return matrix, ids
