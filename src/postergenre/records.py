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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_LENGTH_DELIMITED = 2  # protobuf wire type of bytes, strings, messages and packed lists
_BYTES_LIST, _INT64_LIST = 1, 3  # Feature's field numbers


@dataclass(frozen=True)
class PosterRecord:
    """One training / evaluation sample as stored in a shard."""

    image_jpeg: bytes
    labels: np.ndarray
    imdb_id: str
    split: str
    origin: str
    augmentation: str = "none"


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


def _bytes_entry(key: bytes) -> Callable[[bytes], bytes]:
    """A map entry holding one bytes value under `key`, its constant part made once."""
    name = _field(1, key)

    def entry(value: bytes) -> bytes:
        return _field(1, name + _field(2, _field(_BYTES_LIST, _field(1, value))))
    return entry


# The record's features in key order, as deterministic serialisation writes them; built
# from the constant parts, since every poster of augment goes through here (a fifth of the
# generic `example_bytes`' time; tests/test_records.py checks the two agree).
_AUGMENTATION, _IMAGE, _IMDB_ID, _ORIGIN, _SPLIT = (
    _bytes_entry(key) for key in (b"augmentation", b"image", b"imdb_id", b"origin", b"split"))
_LABELS_NAME = _field(1, b"labels")


def serialize(record: PosterRecord) -> bytes:
    """The record as a `tf.train.Example` (the features `resources/poster_schema.pbtxt`
    describes): what `example_bytes` gives for them."""
    packed = _packed(np.asarray(record.labels, dtype=np.int64).ravel())
    labels = _field(1, _LABELS_NAME + _field(2, _field(_INT64_LIST,
                                                       _field(1, packed) if packed else b"")))
    return _field(1, b"".join((
        _AUGMENTATION(record.augmentation.encode()), _IMAGE(record.image_jpeg),
        _IMDB_ID(record.imdb_id.encode()), labels, _ORIGIN(record.origin.encode()),
        _SPLIT(record.split.encode()))))
