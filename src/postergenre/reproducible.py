"""Byte-reproducible outputs: the same inputs, settings and machine give the same files.

DVC hashes every stage output into dvc.lock, so anything that changes from run to run
without the data or the settings changing (the clock, a random id, Python's per-process
hash seed) makes a committed dvc.lock stale after every `make run`. What is kept off the
files:

- the clock: a file that records "when" records SOURCE_DATE_EPOCH (the reproducible-builds
  convention; 1970-01-01 when unset) instead (`source_date`);
- Keras archives (`.keras`): the zip entries' times, `metadata.json`'s `date_saved` and
  the memory addresses config.json uses to name shared objects (`normalize_keras_archive`);
- SavedModels: the variables in name order, not memory order
  (`export_variables_in_name_order`), and the fingerprint's random `uuid` one derived from
  the content hashes beside it (`normalize_saved_model_fingerprint`);
- Python's string hashing, which orders sets and so the nodes of an exported TensorFlow
  graph: every `postergenre` command runs with PYTHONHASHSEED fixed (`fixed_hash_seed`).

Wall-clock measurements (training seconds, images per second) go to each model's
`timing.json`, which `.dvcignore` keeps out of DVC's hash.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

from postergenre.atomic import atomic_open

HASH_SEED = "0"
# The earliest time a zip entry can hold.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def source_date() -> datetime.datetime:
    """SOURCE_DATE_EPOCH as a UTC time; 1970-01-01 when unset or empty."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    try:
        epoch = int(raw) if raw else 0
    except ValueError as err:
        raise ValueError(f"SOURCE_DATE_EPOCH must be whole seconds, got {raw!r}") from err
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)


def page_date(fallback_epoch: int | None) -> datetime.datetime | None:
    """The date a page states: SOURCE_DATE_EPOCH when set, else `fallback_epoch` (the
    reproducible-builds convention's default, the time of the code's last commit), else
    None (unknown). Never the clock: a rerun writes the same bytes."""
    if os.environ.get("SOURCE_DATE_EPOCH", "").strip():
        return source_date()
    if fallback_epoch is None:
        return None
    return datetime.datetime.fromtimestamp(fallback_epoch, tz=datetime.UTC)


def normalize_keras_archive(path: str | os.PathLike[str]) -> None:
    """Rewrite a `.keras` zip so that its bytes depend on the model only: every entry in
    name order with one fixed time, and `date_saved` in metadata.json from `source_date`."""
    path = Path(path)
    when = source_date()
    stamp = max(_ZIP_EPOCH, when.timetuple()[:6])
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with atomic_open(path, "wb") as handle, zipfile.ZipFile(handle, "w") as out:
        for info, data in sorted(entries, key=lambda entry: entry[0].filename):
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata["date_saved"] = when.strftime("%Y-%m-%d@%H:%M:%S")
                data = json.dumps(metadata).encode()
            elif info.filename == "config.json":
                data = json.dumps(_renumber_shared_objects(json.loads(data))).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=stamp)
            fixed.compress_type = info.compress_type
            fixed.external_attr = 0o644 << 16
            out.writestr(fixed, data)


def _renumber_shared_objects(config: object) -> object:
    """Keras names an object shared by several layers (a dtype policy) by its memory
    address, `id(obj)`, which changes from process to process; number them 1, 2, ... in
    the order they appear (the same sharing, the same bytes)."""
    numbers: dict[int, int] = {}

    def walk(node: object) -> object:
        if isinstance(node, dict):
            return {key: (numbers.setdefault(value, len(numbers) + 1)
                          if key == "shared_object_id" and isinstance(value, int)
                          else walk(value)) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(config)


def normalize_saved_model_fingerprint(saved_model_dir: str | os.PathLike[str]) -> None:
    """Replace the random `uuid` of a SavedModel's fingerprint.pb with a number derived
    from the content hashes it holds (same model, same uuid)."""
    from tensorflow.core.protobuf import fingerprint_pb2

    path = Path(saved_model_dir) / "fingerprint.pb"
    if not path.is_file():
        return
    fingerprint = fingerprint_pb2.FingerprintDef()
    fingerprint.ParseFromString(path.read_bytes())
    content = (fingerprint.saved_model_checksum, fingerprint.graph_def_program_hash,
               fingerprint.signature_def_hash, fingerprint.saved_object_graph_hash,
               fingerprint.checkpoint_hash)
    digest = hashlib.sha256(repr(content).encode()).digest()[:16]
    fingerprint.uuid = str(int.from_bytes(digest, "big"))
    path.write_bytes(fingerprint.SerializeToString(deterministic=True))


@contextlib.contextmanager
def export_variables_in_name_order() -> Iterator[None]:
    """Keras's SavedModel export lists the variables its endpoints use in the order TF
    hands them over, which follows memory addresses and changes from process to process
    (and with it saved_model.pb and the variables files). Within this block they are
    listed by name instead. It wraps a private Keras function (keras 3.x); where that is
    gone, the export is unchanged and only its bytes may vary."""
    try:
        from keras.src.export import saved_model_export_archive as archive
    except ImportError:
        archive = None
    original = getattr(archive, "_list_variables_used_by_fns", None)
    if original is None:
        yield
        return

    def by_name(fns: object) -> tuple[list, list]:
        trainable, other = original(fns)
        return (sorted(trainable, key=lambda v: v.name),
                sorted(other, key=lambda v: v.name))

    archive._list_variables_used_by_fns = by_name
    try:
        yield
    finally:
        archive._list_variables_used_by_fns = original


def fixed_hash_seed(module: str) -> None:
    """Run this command again with PYTHONHASHSEED fixed, unless it is set already (to
    any value: the user's choice stands). Called before anything heavy is imported."""
    if "PYTHONHASHSEED" in os.environ:
        return
    env = {**os.environ, "PYTHONHASHSEED": HASH_SEED}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], env)
