"""The model registry: write-once, content-addressed entries and a `latest` pointer.

Only a blessed model is registered. An entry is `<model>-<hash of its files>/` holding
`model/` (the trained model folder), `thresholds.json` (the decision thresholds chosen
on validation) and `entry.json` (the blessing, data version, metrics). An earlier entry
is never overwritten, and `latest.json` is replaced only after its entry is complete,
so it always points at a whole model.

The registry is a local folder or an `s3://bucket/prefix` URI (through fsspec / s3fs;
endpoint and credentials from the environment, as boto reads them):
- local: the entry is written under a temporary name and renamed into place (atomic);
- S3 has no rename: the entry's files are uploaded first and `entry.json` last, so an
  entry without `entry.json` is incomplete and never read; `latest.json` is one PUT,
  which S3 applies atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from postergenre.atomic import write_json
from postergenre.gate import BLESSED
from postergenre.storage import is_remote, remote_fs

log = logging.getLogger(__name__)
LATEST_FILE = "latest.json"
ENTRY_FILE = "entry.json"
THRESHOLDS_FILE = "thresholds.json"
MODEL_FOLDER = "model"


def content_hash(folder: str | os.PathLike[str]) -> str:
    """sha256 over every file's relative path and bytes, in sorted order."""
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def data_version_of(dvc_file: str | os.PathLike[str]) -> str | None:
    """The data version DVC records for a tracked folder: the md5 in its `.dvc` file."""
    import yaml

    path = Path(dvc_file)
    if not path.is_file():
        return None
    outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def _stage_entry(staging: Path, source: Path, entry_info: dict, thresholds: dict | None) -> None:
    shutil.copytree(source, staging / MODEL_FOLDER)
    if thresholds:
        write_json(staging / THRESHOLDS_FILE, thresholds)
    # Written last: its presence marks a complete entry (what S3 readers check).
    write_json(staging / ENTRY_FILE, entry_info)


def register(
    blessing_path: str | os.PathLike[str],
    model_dirs: Mapping[str, str | os.PathLike[str]],
    registry_dir: str | os.PathLike[str],
    data_version: str | None = None,
) -> Path | str | None:
    """Copy the blessed model into the registry and point `latest` at it.

    Returns the entry (a local Path, or the `s3://` URI of a remote one), or None when
    the gate rejected every model.
    """
    blessing = json.loads(Path(blessing_path).read_text())
    remote = is_remote(registry_dir)
    if not remote:
        # The registry exists even before its first entry (DVC tracks the folder).
        Path(registry_dir).mkdir(parents=True, exist_ok=True)
    if blessing.get("decision") != BLESSED:
        log.warning("register: the gate rejected every model; nothing registered")
        return None
    name = blessing["model"]
    if name not in model_dirs:
        raise KeyError(f"blessed model {name!r} not among the given models {sorted(model_dirs)}")
    source = Path(model_dirs[name])
    if not source.is_dir():
        raise FileNotFoundError(f"blessed model folder not found: {source}")
    entry_name = f"{name}-{content_hash(source)[:16]}"
    entry_info = {"model": name, "entry": entry_name, "data_version": data_version,
                  "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
                  "blessing": blessing}
    latest = {"model": name, "entry": entry_name, "path": f"{entry_name}/{MODEL_FOLDER}",
              "uri": f"{str(registry_dir).rstrip('/')}/{entry_name}",
              "data_version": data_version, "metrics": blessing.get("metrics")}
    thresholds = blessing.get("thresholds")
    if remote:
        fs, root = remote_fs(str(registry_dir))
        if not fs.exists(f"{root}/{entry_name}/{ENTRY_FILE}"):
            with tempfile.TemporaryDirectory(prefix="postergenre-reg-") as tmp:
                _stage_entry(Path(tmp) / "e", source, entry_info, thresholds)
                for path in sorted(Path(tmp, "e").rglob("*"), key=lambda p: p.name == ENTRY_FILE):
                    if path.is_file():
                        rel = path.relative_to(Path(tmp, "e")).as_posix()
                        fs.put_file(str(path), f"{root}/{entry_name}/{rel}")
        fs.pipe_file(f"{root}/{LATEST_FILE}", json.dumps(latest, indent=2).encode())
        log.info("register: %s -> %s", name, latest["uri"])
        return latest["uri"]
    registry = Path(registry_dir)
    entry = registry / entry_name
    if not entry.exists():
        staging = Path(tempfile.mkdtemp(dir=registry, prefix=f".{entry_name}."))
        try:
            _stage_entry(staging, source, entry_info, thresholds)
            os.rename(staging, entry)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    write_json(registry / LATEST_FILE, latest)
    log.info("register: %s -> %s", name, entry)
    return entry


def read_latest(registry_dir: str | os.PathLike[str]) -> dict | None:
    """The `latest.json` pointer, or None when nothing was registered yet."""
    if is_remote(registry_dir):
        fs, root = remote_fs(str(registry_dir))
        if not fs.exists(f"{root}/{LATEST_FILE}"):
            return None
        return json.loads(fs.cat_file(f"{root}/{LATEST_FILE}"))
    path = Path(registry_dir) / LATEST_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def fetch_latest(registry_dir: str | os.PathLike[str],
                 cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """A local folder holding the latest entry (`model/`, `thresholds.json`, `entry.json`).

    A local registry's entry is used in place; a remote one is downloaded once into
    `cache_dir` (default: a temporary folder). None when nothing was registered yet.
    """
    latest = read_latest(registry_dir)
    if latest is None:
        return None
    entry_name = latest["entry"]
    if not is_remote(registry_dir):
        entry = Path(registry_dir) / entry_name
        if not (entry / ENTRY_FILE).is_file():
            raise FileNotFoundError(f"{entry}: latest.json points at an incomplete entry")
        return entry
    fs, root = remote_fs(str(registry_dir))
    if not fs.exists(f"{root}/{entry_name}/{ENTRY_FILE}"):
        raise FileNotFoundError(f"{registry_dir}/{entry_name}: latest.json points at an "
                                "incomplete entry")
    cache = Path(cache_dir or tempfile.mkdtemp(prefix="postergenre-registry-"))
    cache.mkdir(parents=True, exist_ok=True)
    local = cache / entry_name
    if not (local / ENTRY_FILE).is_file():  # entries are write-once: a cached copy is current
        staging = Path(tempfile.mkdtemp(dir=cache, prefix=f".{entry_name}."))
        fs.get(f"{root}/{entry_name}/", str(staging) + "/", recursive=True)
        shutil.rmtree(local, ignore_errors=True)
        os.rename(staging, local)
    return local


def read_thresholds(entry_dir: str | os.PathLike[str]) -> dict | None:
    """The entry's decision thresholds ({"global": t, "per_genre": {genre: t}}), if any."""
    path = Path(entry_dir) / THRESHOLDS_FILE
    return json.loads(path.read_text()) if path.is_file() else None
