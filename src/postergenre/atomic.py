"""Atomic file writes: a temp file in the same folder, then a rename.

A reader (or a killed run's rerun) sees either the old file or the whole new one,
never half of one.

`tempfile.mkstemp` creates its file mode 0600 (it is meant for secrets), and the rename
keeps that mode: every output would be unreadable to the other users of a shared data
folder, a DVC cache or a container running under another UID. So the temp file is given
the mode an ordinary `open(path, "w")` would give it (0666 less the umask, 0644 under the
usual umask 022) before it is renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows.

    `os.umask` can only be read by setting it, which is a race with any other thread
    creating a file at that moment (the crawler writes posters from worker threads), so
    Linux's /proc/self/status is read first; elsewhere the set-and-restore is serialised.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a newly created ordinary file gets: 0666 less the umask."""
    return 0o666 & ~current_umask()


def folder_mode() -> int:
    """The mode a newly created folder gets: 0777 less the umask (mkdtemp gives 0700)."""
    return 0o777 & ~current_umask()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temp file beside `path`; on success rename it to `path`, else delete it.

    The file ends with the mode `open` would have given it (see the module doc).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        handle = os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        with handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike[str], content: Any) -> Path:
    """Write `content` as indented JSON, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(content, handle, indent=2)
        handle.write("\n")
    return Path(path)
