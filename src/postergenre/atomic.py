"""Atomic writes: a file (a temp file in the same folder, then a rename) or a whole
folder (`atomic_folder`: built in `<folder>.partial`, then swapped into place).

A reader (or a killed run's rerun) sees either the old file or folder or the whole new
one, never half of one. (This holds for a killed process; after a power cut the
filesystem decides what was on disk.)

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
import shutil
import signal
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
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.filename is None:  # a full disk names no file: name the one being written
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until the block has ended,
    then deliver it: a block that writes several files, or swaps a folder in, finishes
    before the KeyboardInterrupt unwinds the stage. (Only the main thread receives
    signals; elsewhere the block runs as it is.)"""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield  # (None: a handler installed outside Python, left alone)
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)  # to the handler the block found


def write_json(path: str | os.PathLike[str], content: Any) -> Path:
    """Write `content` as indented JSON, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(content, handle, indent=2)
        handle.write("\n")
    return Path(path)


# --- Whole folders -------------------------------------------------------------------
#
# A folder of several files (a trained model) cannot be written with one rename of a
# file. It is built in a sibling `<target>.partial` on the same filesystem, then swapped
# with the target in one `renameat2(RENAME_EXCHANGE)` (Linux 3.15+), so a reader, or a
# kill at any moment, finds the previous folder or the new one whole, never a mix. Where
# the filesystem cannot exchange (some network filesystems, other OSes) two renames are
# used, target -> `<target>.old` then partial -> target; a kill between them leaves the
# previous folder whole under `.old`, and the next `atomic_folder` on that target puts it
# back before anything else.

PARTIAL_SUFFIX = ".partial"
OLD_SUFFIX = ".old"
_RENAME_EXCHANGE = 2  # linux/fs.h


class FolderBusyError(RuntimeError):
    """Another live process is building the same folder."""


def _sibling(target: Path, suffix: str) -> Path:
    return target.with_name(target.name + suffix)


def partial_folder(target: str | os.PathLike[str]) -> Path:
    """Where `atomic_folder(target)` builds the new folder."""
    return _sibling(Path(target), PARTIAL_SUFFIX)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the OS or filesystem cannot."""
    import ctypes
    import errno

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # not Linux, or a libc older than glibc 2.28
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def recover_folder(target: str | os.PathLike[str]) -> None:
    """Finish a swap a kill interrupted: put `<target>.old` back where the target is
    missing (the kill fell between the two renames), else delete it (the swap had
    finished)."""
    target = Path(target)
    old = _sibling(target, OLD_SUFFIX)
    if not old.exists():
        return
    if target.exists():
        _remove(old)
    else:
        os.rename(old, target)


def replace_folder(source: Path, target: Path) -> None:
    """Move the finished folder `source` to `target`, replacing whatever is there, so
    that `target` is at every moment either the previous content or the new one."""
    if not target.exists() and not target.is_symlink():
        os.rename(source, target)
    elif _exchange(source, target):
        _remove(source)  # it now holds the previous content
    else:
        old = _sibling(target, OLD_SUFFIX)
        _remove(old)
        os.rename(target, old)
        os.rename(source, target)
        _remove(old)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty folder `<target>.partial` to build the new `target` in; on success
    swap it into place, on an error delete it. The previous `target` is untouched until
    the swap.

    The partial folder is locked (flock) while its process lives: a second run on the
    same target fails at once with FolderBusyError instead of writing into it, and the
    leftover of a killed run (no lock) is emptied and reused.
    """
    import fcntl

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(target)
    partial = partial_folder(target)
    if partial.is_symlink() or partial.is_file():
        partial.unlink()
    partial.mkdir(mode=folder_mode(), exist_ok=True)
    partial.chmod(folder_mode())
    lock = os.open(partial, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusyError(f"{target}: another process is writing it (its "
                                  f"{partial.name} folder is locked); wait for it to "
                                  "finish or stop it") from None
        for stale in partial.iterdir():  # a killed run's leftovers
            _remove(stale)
        try:
            yield partial
        except BaseException:
            with interrupts_held():
                _remove(partial)
            raise
        with interrupts_held():
            replace_folder(partial, target)
    finally:
        os.close(lock)
