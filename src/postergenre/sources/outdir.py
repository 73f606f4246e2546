"""The output folder of an ingest source: a check before writing, one build-and-swap.

A source writes a data set folder (`labels.csv` + `posters/`, see labels.py) that it may
replace or prune, so it first makes sure the folder holds nothing else: a wrong `--out`
must never delete other data.

Sources that write a whole new set (demo, local, dvc) build it with `building(out)`: in a
sibling temporary folder that replaces `out` only once complete, so a crash midway leaves
the previous set untouched, and a smaller new set leaves none of the old files behind.
The tmdb source instead updates `out` (a crawl is resumed, not restarted): new posters
wait in `INCOMING_DIR` until the run ends well, every file is written atomically, and
`remove_partial_files` deletes what a killed run left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from postergenre.data.labels import LABELS_FILE, POSTERS_DIR

# The tmdb source's new posters, until its run ends well (sources/tmdb.py).
INCOMING_DIR = ".posters.incoming"


def check_dataset_dir(out: Path) -> None:
    """Refuse a folder that holds more than a poster data set."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    extra = sorted(p.name for p in out.iterdir()
                   if p.name not in (LABELS_FILE, POSTERS_DIR, INCOMING_DIR)
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


@contextlib.contextmanager
def building(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new empty folder beside `out_dir` to build a data set in.

    When the block ends normally the folder becomes `out_dir` (an old `out_dir` is
    removed only once the new one is in place); when it raises, the folder is deleted
    and `out_dir` is left as it was. `out_dir` must be new, or hold only a data set.
    """
    out = Path(out_dir).resolve()
    check_dataset_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A sibling, not a system temp folder: same file system, so the swap is a rename.
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        yield tmp
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_into_place(new: Path, out: Path) -> None:
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
