"""A local model registry: write-once, content-addressed entries and a `latest` pointer.

Only a blessed model is registered. Each entry is a folder named after the model and
the hash of its files, written to a temporary name and renamed into place, so an entry
is either complete or absent and an earlier entry is never overwritten. `latest.json`
is replaced atomically after the entry is complete, so it always points at a whole model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from postergenre.atomic import write_json
from postergenre.gate import BLESSED

log = logging.getLogger(__name__)
LATEST_FILE = "latest.json"
ENTRY_FILE = "entry.json"


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


def register(
    blessing_path: str | os.PathLike[str],
    model_dirs: Mapping[str, str | os.PathLike[str]],
    registry_dir: str | os.PathLike[str],
) -> Path | None:
    """Copy the blessed model into the registry and point `latest` at it.

    Returns the entry's folder, or None when the gate rejected every model.
    """
    blessing = json.loads(Path(blessing_path).read_text())
    registry = Path(registry_dir)
    # The registry exists even before its first entry (DVC tracks the folder).
    registry.mkdir(parents=True, exist_ok=True)
    if blessing.get("decision") != BLESSED:
        log.warning("register: the gate rejected every model; nothing registered")
        return None
    name = blessing["model"]
    if name not in model_dirs:
        raise KeyError(f"blessed model {name!r} not among the given models {sorted(model_dirs)}")
    source = Path(model_dirs[name])
    entry_name = f"{name}-{content_hash(source)[:16]}"
    entry = registry / entry_name
    if not entry.exists():
        staging = Path(tempfile.mkdtemp(dir=registry, prefix=f".{entry_name}."))
        try:
            shutil.copytree(source, staging / "model")
            write_json(staging / ENTRY_FILE, {"model": name, "blessing": blessing})
            os.rename(staging, entry)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    write_json(registry / LATEST_FILE, {
        "model": name, "entry": entry_name, "path": f"{entry_name}/model",
        "metrics": blessing.get("metrics"),
    })
    log.info("register: %s -> %s", name, entry)
    return entry
