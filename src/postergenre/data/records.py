"""A shard record, its bytes as a `tf.train.Example`, and its TFRecord frame, without
TensorFlow.

`augment`'s worker processes serialise and frame the records they render (so the process
writing the shards only appends bytes to files), and they must not import TensorFlow: a
worker would then take seconds and most of a gigabyte to start. The Example message is
small and fixed, so it is written here in protobuf's wire format directly, byte for byte
what `tf.train.Example.SerializeToString(deterministic=True)` gives (map entries in key
order), and framed as `tf.io.TFRecordWriter` frames it; tests/test_records.py checks both
against TensorFlow on varied records. Readers parse with TensorFlow / tfx-bsl as before.

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }   # entry: { key = 1; value = 2; }
    Feature  { BytesList bytes_list = 1; Int64List int64_list = 3; }   # one of
    BytesList { repeated bytes value = 1; }  Int64List { repeated int64 value = 1 [packed] }
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import google_crc32c
import numpy as np

_LENGTH_DELIMITED = 2  # protobuf wire type of bytes, strings, messages and packed lists
_BYTES_LIST, _INT64_LIST = 1, 3  # Feature's field numbers
_ONE_BYTE = [bytes((value,)) for value in range(0x80)]  # the varints of 0..127
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
        return _ONE_BYTE[value]
    if 0 <= value < 0x4000:  # the length of a poster's JPEG, at the sizes trained on
        return bytes((value & 0x7F | 0x80, value >> 7))
    value &= 0xFFFFFFFFFFFFFFFF  # a negative int64 is written as its 64-bit two's complement
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return b"".join((_varint(number << 3 | _LENGTH_DELIMITED), _varint(len(payload)), payload))


def _packed(values: np.ndarray) -> bytes:
    if values.size and values.min() >= 0 and values.max() < 0x80:
        return values.astype(np.uint8).tobytes()  # one byte per small value: labels are 0/1
    return b"".join(_varint(int(v)) for v in values)


def _bytes_feature(values: Sequence[bytes]) -> bytes:
    return _field(_BYTES_LIST, b"".join(_field(1, value) for value in values))


def _int64_feature(values: Sequence[int] | np.ndarray) -> bytes:
    packed = _packed(np.asarray(values, dtype=np.int64).ravel())
    return _field(_INT64_LIST, _field(1, packed) if packed else b"")


def _entry(name: str, feature: bytes) -> bytes:
    """One entry of the Features map: its key and its Feature."""
    return _field(1, _field(1, name.encode()) + _field(2, feature))


def example_bytes(bytes_features: Mapping[str, Sequence[bytes]],
                  int64_features: Mapping[str, Sequence[int] | np.ndarray]) -> bytes:
    """A `tf.train.Example` of these features, serialised deterministically."""
    features = {name: _bytes_feature(values) for name, values in bytes_features.items()}
    features.update((name, _int64_feature(values)) for name, values in int64_features.items())
    return _field(1, b"".join(_entry(name, feature) for name, feature in sorted(features.items())))


@functools.lru_cache(maxsize=1024)
def _text_entry(name: str, value: str) -> bytes:
    """The entry of a one-string feature; cached, for the values a shard repeats (split,
    augmentation names)."""
    return _entry(name, _bytes_feature([value.encode()]))


@functools.lru_cache(maxsize=4096)
def _labels_entry(dtype: str, values: bytes) -> bytes:
    """The labels' entry, cached by their bytes: a split holds few distinct label sets."""
    return _entry("labels", _int64_feature(np.frombuffer(values, dtype=dtype)))


def _one_bytes_entry(name: str, value: bytes) -> bytes:
    """`_entry(name, _bytes_feature([value]))` with `value` copied once, not at each of
    its four levels of nesting (the image is most of a record)."""
    head = b""
    size = len(value)
    for tag in (b"\x0a", b"\x0a", b"\x12"):  # BytesList.value, Feature.bytes_list, entry value
        head = tag + _varint(size) + head
        size = len(head) + len(value)
    key = _field(1, name.encode())
    return b"".join((b"\x0a", _varint(len(key) + size), key, head, value))


def serialize(record: PosterRecord) -> bytes:
    """The record as a `tf.train.Example` (the features `resources/poster_schema.pbtxt`
    describes): what `example_bytes` writes for its six features, put together in key
    order by hand, the repeated entries cached (otherwise the writer takes most of a
    worker's Python time)."""
    labels = np.ascontiguousarray(record.labels)
    entries = (
        _text_entry("augmentation", record.augmentation),
        _one_bytes_entry("image", record.image_jpeg),
        _one_bytes_entry("imdb_id", record.imdb_id.encode()),
        _labels_entry(labels.dtype.str, labels.tobytes()),
        _one_bytes_entry("origin", record.origin.encode()),
        _text_entry("split", record.split),
    )
    return b"".join((b"\x0a", _varint(sum(map(len, entries))), *entries))


def _masked_crc(data: bytes) -> bytes:
    """TFRecord's checksum: CRC-32C, rotated and offset (so a CRC of CRCs stays useful)."""
    crc = google_crc32c.value(data)
    return struct.pack("<I", ((crc >> 15 | crc << 17) + 0xA282EAD8) & 0xFFFFFFFF)


def frame(record: bytes) -> bytes:
    """A record as a TFRecord file holds it: its length, the length's checksum, the record,
    the record's checksum (what `tf.io.TFRecordWriter.write` appends)."""
    length = struct.pack("<Q", len(record))
    return b"".join((length, _masked_crc(length), record, _masked_crc(record)))
