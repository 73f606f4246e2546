"""A shard record, and its bytes as a `tf.train.Example`, without TensorFlow.

`augment`'s worker processes serialise the records they render (so the process writing the
shards only writes), and they must not import TensorFlow: a worker would then take
seconds and most of a gigabyte to start. The Example message is small and fixed, so it is
written here in protobuf's wire format directly, byte for byte what
`tf.train.Example.SerializeToString(deterministic=True)` gives (map entries in key order),
which tests/test_records.py checks against TensorFlow on varied records. Readers parse
with TensorFlow / tfx-bsl as before.

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }   # entry: { key = 1; value = 2; }
    Feature  { BytesList bytes_list = 1; Int64List int64_list = 3; }   # one of
    BytesList { repeated bytes value = 1; }  Int64List { repeated int64 value = 1 [packed] }
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_LENGTH_DELIMITED = 2  # protobuf wire type of bytes, strings, messages and packed lists
_BYTES_LIST, _INT64_LIST = 1, 3  # Feature's field numbers
ORIGINAL = "none"  # the augmentation name of a poster stored as it is


@dataclass(frozen=True)
class PosterRecord:
    """One training / evaluation sample as stored in a shard."""

    image_jpeg: bytes
    labels: np.ndarray
    imdb_id: str
    split: str
    origin: str
    augmentation: str = ORIGINAL


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return bytes((value,))
    value &= 0xFFFFFFFFFFFFFFFF  # a negative int64 is written as its 64-bit two's complement
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _packed(values: np.ndarray) -> bytes:
    if values.size and values.min() >= 0 and values.max() < 0x80:
        return values.astype(np.uint8).tobytes()  # one byte per small value: labels are 0/1
    return b"".join(_varint(int(v)) for v in values)


def example_bytes(bytes_features: Mapping[str, Sequence[bytes]],
                  int64_features: Mapping[str, Sequence[int] | np.ndarray]) -> bytes:
    """A `tf.train.Example` of these features, serialised deterministically."""
    features = {name: _field(_BYTES_LIST, b"".join(_field(1, v) for v in values))
                for name, values in bytes_features.items()}
    for name, values in int64_features.items():
        packed = _packed(np.asarray(values, dtype=np.int64).ravel())
        features[name] = _field(_INT64_LIST, _field(1, packed) if packed else b"")
    entries = b"".join(_field(1, _field(1, name.encode()) + _field(2, feature))
                       for name, feature in sorted(features.items()))
    return _field(1, entries)


def serialize(record: PosterRecord) -> bytes:
    """The record as a `tf.train.Example` (the features `resources/poster_schema.pbtxt`
    describes)."""
    return example_bytes(
        {"image": [record.image_jpeg], "imdb_id": [record.imdb_id.encode()],
         "split": [record.split.encode()], "origin": [record.origin.encode()],
         "augmentation": [record.augmentation.encode()]},
        {"labels": record.labels})
