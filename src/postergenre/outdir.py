"""The output folder of an ingest source: checks before writing, swaps, leftovers.

An ingest source writes a data set folder (`labels.csv` + `posters/`, see labels.py)
that it may replace or prune, so it first makes sure the folder holds nothing else: a
wrong `--out` must never delete other data.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from postergenre.labels import LABELS_FILE, POSTERS_DIR


def check_dataset_dir(out: Path) -> None:
    """Refuse a folder that holds more than a poster data set."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    extra = sorted(p.name for p in out.iterdir() if p.name not in (LABELS_FILE, POSTERS_DIR)
                   and not p.name.startswith(f".{LABELS_FILE}."))
    if extra:
        raise FileExistsError(
            f"{out} holds more than a poster data set ({', '.join(extra[:5])}); refusing to "
            "write into it. Pick an empty or new folder, or one an ingest source wrote.")


def remove_partial_files(folder: Path) -> int:
    """Delete temp files a killed run left (atomic_open names them `.<name>.<rand>.tmp`)."""
    removed = 0
    if folder.is_dir():
        for path in folder.glob(".*.tmp"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def sibling_tmp(out: Path) -> Path:
    """A fresh sibling folder of `out` (same file system, so the final rename is atomic)."""
    return out.parent / f".{out.name}.tmp-{uuid.uuid4().hex}"


def swap_into_place(new: Path, out: Path) -> None:
    """Make `new` the folder at `out`; the old `out` is removed only once `new` is there."""
    if not out.exists():
        os.replace(new, out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex}"
    os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old)
