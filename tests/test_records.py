"""Shard records serialised without TensorFlow (records.py) are the bytes TensorFlow's own
deterministic serialisation gives, for every kind of value a record can hold."""

import numpy as np
import pytest
import tensorflow as tf

from postergenre.data.records import PosterRecord, example_bytes, frame, serialize


def _tensorflow_bytes(record: PosterRecord) -> bytes:
    example = tf.train.Example()
    feature = example.features.feature
    feature["image"].bytes_list.value.append(record.image_jpeg)
    feature["labels"].int64_list.value.extend(int(v) for v in record.labels)
    for name in ("imdb_id", "split", "origin", "augmentation"):
        feature[name].bytes_list.value.append(getattr(record, name).encode())
    return example.SerializeToString(deterministic=True)


@pytest.mark.parametrize("seed", range(4))
def test_records_are_the_bytes_tensorflow_writes(seed):
    rng = np.random.default_rng(seed)
    for i in range(100):
        # Multi-hot labels, then any int64 (negatives take ten bytes, large values several),
        # float labels (as a test shard holds), none, the workers' one byte per genre; empty
        # and long strings, images of every size.
        labels = [rng.integers(0, 2, 19), rng.integers(-2**63, 2**63 - 1, 19, dtype=np.int64),
                  rng.integers(0, 2, 19).astype(np.float64), np.zeros(0, np.int64),
                  rng.integers(0, 2, 19).astype(np.uint8)][i % 5]
        image = rng.integers(0, 256, int(rng.integers(0, 70_000)), dtype=np.uint8).tobytes()
        record = PosterRecord(image, labels, f"tt{i:07d}", ["train", "validation", "test"][i % 3],
                              "" if i % 5 == 0 else f"tt{i // 2:07d}",
                              ["none", "crop+hflip+jitter", "", "é"][i % 4])
        assert serialize(record) == _tensorflow_bytes(record), i
        # The generic writer agrees, and TensorFlow reads back what went in.
        generic = example_bytes(
            {"image": [record.image_jpeg], "imdb_id": [record.imdb_id.encode()],
             "split": [record.split.encode()], "origin": [record.origin.encode()],
             "augmentation": [record.augmentation.encode()]}, {"labels": record.labels})
        assert generic == serialize(record)
        parsed = tf.train.Example.FromString(serialize(record)).features.feature
        assert parsed["image"].bytes_list.value == [image]
        assert list(parsed["labels"].int64_list.value) == [int(v) for v in labels]


def test_several_values_per_feature_and_empty_lists():
    data = example_bytes({"b": [b"", b"x", b"yz"], "a": []}, {"c": [1, 300, -1], "d": []})
    example = tf.train.Example()
    example.features.feature["b"].bytes_list.value.extend([b"", b"x", b"yz"])
    example.features.feature["a"].bytes_list.SetInParent()
    example.features.feature["c"].int64_list.value.extend([1, 300, -1])
    example.features.feature["d"].int64_list.SetInParent()
    assert data == example.SerializeToString(deterministic=True)


def test_frames_are_what_tensorflows_tfrecord_writer_writes(tmp_path):
    rng = np.random.default_rng(0)
    records = [rng.integers(0, 256, n, dtype=np.uint8).tobytes()
               for n in (0, 1, 127, 128, 16_383, 16_384, 70_000)]
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
        for record in records:
            writer.write(record)
    assert b"".join(map(frame, records)) == (tmp_path / "tf.tfrecord").read_bytes()
    read = [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "tf.tfrecord"))]
    assert read == records
