"""TFRecord shards: how posters travel between stages, and how training reads them.

Posters move between steps as a few shard files, not one file per poster (many small
artifacts are slow in both Kubeflow and DVC). Each record is a `tf.train.Example`
holding the resized RGB poster as JPEG, its 19-label vector, its movie id, its split,
the training movie it came from (itself unless augmented) and the augmentation applied,
as the TensorFlow Metadata schema `resources/poster_schema.pbtxt` describes.

Readers go through tfx-bsl's TFXIO (`tfxio_of`), so the same shards feed `tf.data` for
training (`dataset`: parallel JPEG decode, prefetch), Arrow / pandas for analysis
(`labels_of`, `record_batches`) and Apache Beam for batch jobs (`tfxio_of(...).BeamSource()`).
Every reader streams: memory stays bounded whatever the data size.

A shard that cannot be read (a flipped bit fails TFRecord's CRC, a cut file ends mid-record)
makes TensorFlow say "corrupted record at 1600" without naming the file. The Python-side
readers (`record_batches`, `labels_of`) then read each shard of the split on its own to
find the damaged one, and raise `ShardReadError` naming it. A tf.data pipeline that Keras
iterates cannot be wrapped that way, so `dataset` and `iter_records` first read the split's
shards through (`check_split`: framing and CRCs, in TensorFlow's reader, and the record
count against the manifest, which also catches a shard cut at a record boundary) and
raise `ShardReadError` naming a damaged shard before any model sees it (one more pass
over the split's bytes in TensorFlow's reader, no decoding: little beside an epoch).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

# Without TensorFlow: augment's worker processes serialise records (see records.py).
from postergenre.data.records import PosterRecord, frame
from postergenre.data.records import serialize as to_example
from postergenre.genres import NUM_GENRES

if TYPE_CHECKING:  # TensorFlow loads only where shards are read: writing them (augment)
    import tensorflow as tf  # needs none of it (its import costs seconds and ~700 MiB)

log = logging.getLogger(__name__)
MANIFEST_FILE = "manifest.json"
SCHEMA_FILE = "poster_schema.pbtxt"


class ShardReadError(ValueError):
    """A shard file that cannot be read; the message names it and what is wrong."""


def _tf_message(err: BaseException) -> str:
    """TensorFlow's error text without its graph-node and op decorations."""
    text = getattr(err, "message", None) or str(err)
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", text.strip(), flags=re.S).strip()


def find_bad_shards(paths: Iterable[str]) -> list[tuple[str, str]]:
    """(shard, problem) for each file that cannot be read through, record by record
    (TFRecord framing and CRCs, then each record as a tf.train.Example)."""
    import tensorflow as tf

    bad = []
    for path in paths:
        try:
            for i, record in enumerate(tf.data.TFRecordDataset(path)):
                try:
                    tf.train.Example.FromString(record.numpy())
                except Exception:  # noqa: BLE001 - protobuf's DecodeError and kin
                    raise ValueError(f"record {i} is not a tf.train.Example") from None
        except (tf.errors.OpError, ValueError) as err:
            bad.append((path, _tf_message(err)))
    return bad


def shard_error(prepared_dir: str | os.PathLike[str], split: str,
                err: BaseException) -> ShardReadError:
    """The error to raise for a failed read of a split: it names the damaged shard(s)."""
    paths = shard_paths(prepared_dir, split)
    bad = find_bad_shards(paths)
    if bad:
        listed = "; ".join(f"{path}: {problem}" for path, problem in bad)
        return ShardReadError(f"split {split!r}: cannot read shard(s): {listed} (rerun "
                              "augment, or restore the prepared folder with `dvc checkout`)")
    return ShardReadError(f"{prepared_dir}: cannot read split {split!r} "
                          f"({_tf_message(err)}); its shards: {', '.join(paths)}")


def check_split(prepared_dir: str | os.PathLike[str], split: str) -> None:
    """Read a split's shards through and count their records against the manifest;
    ShardReadError naming the shard(s) when one is damaged or cut short (module doc). A
    shard cut at a record boundary reads without error, only shorter: a model would be
    trained, or scored, on part of the split as if it were all of it."""
    import tensorflow as tf

    paths = shard_paths(prepared_dir, split)
    if not paths:
        return
    try:
        found = int(tf.data.TFRecordDataset(paths).reduce(np.int64(0), lambda n, _: n + 1))
    except tf.errors.OpError as err:
        raise shard_error(prepared_dir, split, err) from None
    manifest = read_manifest(prepared_dir)
    expected = ((manifest.get("counts") or {}).get(split) or {}).get("records")
    if expected is None:
        log.warning("%s/%s records no count for split %r: not checked", prepared_dir,
                    MANIFEST_FILE, split)
    elif found != int(expected):
        raise ShardReadError(
            f"split {split!r}: the shards hold {found} record(s), {MANIFEST_FILE} says "
            f"{expected}: the shards in {prepared_dir} "
            f"({', '.join(manifest['shards'].get(split, []))}) are incomplete or not those "
            "augment wrote; rerun augment")


def write_shards(
    records: Iterable[PosterRecord | bytes], out_dir: str | os.PathLike[str], prefix: str,
    shard_size: int
) -> list[str]:
    """Write records into `<prefix>-00000.tfrecord`, ... of at most `shard_size` each;
    a record is a PosterRecord or its TFRecord frame, already serialised and framed
    (`records.frame(to_example(record))`, as augment's workers send them). The files are
    what `tf.io.TFRecordWriter` writes (tests/test_records.py), appended here with plain
    file writes."""
    if shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    shard: BinaryIO | None = None
    count = 0
    try:
        for record in records:
            data = record if isinstance(record, bytes) else frame(to_example(record))
            with _naming(out, names):
                if count % shard_size == 0:
                    if shard is not None:
                        shard.close()
                    names.append(f"{prefix}-{len(names):05d}.tfrecord")
                    # A large buffer: the records are a few KB each, written one by one.
                    shard = open(out / names[-1], "wb", buffering=1 << 20)  # noqa: SIM115
                assert shard is not None  # opened above for the first record
                shard.write(data)
            count += 1
        if shard is not None:
            with _naming(out, names):
                shard.close()
    finally:
        if shard is not None and not shard.closed:
            with contextlib.suppress(OSError):  # the error on its way out says what failed
                shard.close()
    return names


@contextlib.contextmanager
def _naming(out: Path, names: list[str]) -> Iterator[None]:
    """A failed write names no file (a full disk): name the shard being written."""
    try:
        yield
    except OSError as err:
        if err.filename is None and names and err.strerror:
            raise OSError(err.errno, err.strerror, str(out / names[-1])) from err
        raise


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


@functools.cache
def load_schema() -> Any:
    """The shards' TensorFlow Metadata schema (`schema_pb2.Schema`), kept in the repo."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    text = resources.files("postergenre").joinpath("resources", SCHEMA_FILE).read_text("utf-8")
    return text_format.Parse(text, schema_pb2.Schema())


def tfxio_of(prepared_dir: str | os.PathLike[str], split: str) -> Any:
    """A tfx-bsl `TFExampleRecord` over a split's shards: `.TensorFlowDataset(options)`,
    `.RecordBatches(options)` (Arrow) and `.BeamSource()` (Apache Beam) all read the same
    files with the same schema."""
    from tfx_bsl.public import tfxio

    return tfxio.TFExampleRecord(file_pattern=shard_paths(prepared_dir, split),
                                 schema=load_schema(),
                                 telemetry_descriptors=["postergenre"])


def _tf_batches(prepared_dir: str | os.PathLike[str], split: str, batch_size: int,
                shuffle: bool, seed: int) -> tf.data.Dataset:
    from tfx_bsl.public import tfxio

    if not read_manifest(prepared_dir)["shards"].get(split):
        raise ValueError(f"{prepared_dir}: split {split!r} has no records")
    check_split(prepared_dir, split)
    options = tfxio.TensorFlowDatasetOptions(
        batch_size=batch_size, shuffle=shuffle, shuffle_seed=seed if shuffle else None,
        # A buffer of encoded records (a few KB each), not decoded images: bounded memory.
        shuffle_buffer_size=4096, num_epochs=1)
    return tfxio_of(prepared_dir, split).TensorFlowDataset(options)


def decode_poster(data: tf.Tensor) -> tf.Tensor:
    """Encoded image bytes -> RGB uint8 (h, w, 3), pixel for pixel what OpenCV decodes.

    TensorFlow's JPEG decoder defaults to libjpeg's fast integer IDCT, OpenCV (which
    `predict` and the data stages use) to the accurate one: up to 9 levels apart per
    pixel. Every TensorFlow reader (training, serving, batch scoring) decodes here.
    """
    import tensorflow as tf

    return tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False))


def _decode_images(images: tf.Tensor, image_size: int) -> tf.Tensor:
    """A batch of JPEG strings -> (b, size, size, 3) uint8 RGB."""
    import tensorflow as tf

    return tf.map_fn(decode_poster, images,
                     fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8))


def to_model_size(images: tf.Tensor, size: int) -> tf.Tensor:
    """float32 posters (one, or a batch) at a model's own side: the one resize between a
    stored poster and a model, in training, evaluate, `predict` and the SavedModel (area
    interpolation; nothing at all where the side is already `size`)."""
    import tensorflow as tf

    if images.shape[-3] == size and images.shape[-2] == size:
        return images
    return tf.image.resize(images, (size, size), method="area")


def decode_prepared(jpegs: Sequence[bytes], stored_size: int, model_size: int) -> np.ndarray:
    """`prepare_poster`'s JPEGs as a model takes them: the decode and resize that training
    and evaluate apply to the same bytes in the shards (`predict`'s half of the contract)."""
    import tensorflow as tf

    images = tf.cast(_decode_images(tf.constant(list(jpegs), tf.string), stored_size),
                     tf.float32)
    return to_model_size(images, model_size).numpy()


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
    Unshuffled, the order is the order of `labels_of` (the same TFXIO read).
    """
    import tensorflow as tf

    image_size = int(read_manifest(prepared_dir)["image_size"])

    def to_pair(batch: dict[str, tf.Tensor]):
        image = tf.cast(_decode_images(batch["image"], image_size), tf.float32)
        labels = tf.cast(batch["labels"], tf.float32)
        if with_ids:
            return {"image": image, "labels": labels, "imdb_id": batch["imdb_id"]}
        return image, labels

    # Decoding runs per batch, batches in parallel; TFXIO already prefetches the records.
    return (_tf_batches(prepared_dir, split, batch_size, shuffle, seed)
            .map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def iter_records(prepared_dir: str | os.PathLike[str], split: str) -> Iterator[dict]:
    """Every record of a split as plain Python values (for tests and analysis)."""
    import tensorflow as tf

    image_size = int(read_manifest(prepared_dir)["image_size"])
    batches = iter(_tf_batches(prepared_dir, split, 256, shuffle=False, seed=0))
    while True:
        try:
            batch = next(batches)
            images = _decode_images(batch["image"], image_size).numpy()
        except StopIteration:
            return
        except tf.errors.OpError as err:
            raise shard_error(prepared_dir, split, err) from err
        columns = {k: batch[k].numpy() for k in ("labels", "imdb_id", "split", "origin",
                                                 "augmentation")}
        for i in range(images.shape[0]):
            yield {
                "image": images[i],
                "labels": columns["labels"][i].astype(np.uint8),
                **{k: columns[k][i].decode() for k in ("imdb_id", "split", "origin",
                                                       "augmentation")},
            }


def record_batches(prepared_dir: str | os.PathLike[str], split: str,
                   columns: Iterable[str] | None = None, batch_size: int = 1024) -> Iterator:
    """A split as Arrow RecordBatches (optionally only `columns`), for pandas / analysis."""
    import tensorflow as tf
    from tfx_bsl.public import tfxio

    if not shard_paths(prepared_dir, split):
        return
    source = tfxio_of(prepared_dir, split)
    if columns is not None:
        source = source.Project(list(columns))
    batches = iter(source.RecordBatches(
        tfxio.RecordBatchesOptions(batch_size=batch_size, shuffle=False, num_epochs=1)))
    while True:
        # Only the read is guarded: an error in the caller's loop body is the caller's.
        try:
            batch = next(batches)
        except StopIteration:
            return
        except tf.errors.OpError as err:
            raise shard_error(prepared_dir, split, err) from err
        yield batch


def labels_of(prepared_dir: str | os.PathLike[str], split: str) -> tuple[np.ndarray, list[str]]:
    """The (n, 19) label matrix and movie ids of a split, in read order, without images."""
    labels: list[np.ndarray] = []
    ids: list[str] = []
    for batch in record_batches(prepared_dir, split, ("labels", "imdb_id")):
        column = batch.column(batch.schema.get_field_index("labels"))
        labels.append(column.flatten().to_numpy().reshape(-1, NUM_GENRES).astype(np.uint8))
        id_column = batch.column(batch.schema.get_field_index("imdb_id"))
        ids.extend(v.decode() for v in id_column.flatten().to_pylist())
    matrix = np.concatenate(labels) if labels else np.zeros((0, NUM_GENRES), np.uint8)
    return matrix, ids
