"""Measure poster files for `validate`: size, header dimensions, decodability, hash.

Checks run cheapest first and stop as soon as a later one would be meaningless or unsafe:
the file is read only when it is a regular file within the byte bound, and the pixel count
comes from the file header (images.header_size reads headers without decoding), so a
decompression bomb (a small file claiming 20000x20000 pixels) is caught before OpenCV is
asked to allocate it. A file that is none of the poster formats (images.POSTER_FORMATS), or
whose header cannot be read, is never decoded: it fails the decode rule, saying which.
Values that could not be measured are None, so only the rule that explains the problem
fires for a row (great-expectations skips nulls in column rules).
`probe_posters` measures a whole labels table's posters on a thread pool sized to the CPUs
the process may use.

Each poster file is read once: the header check, the decode and the hash all work on those
bytes. The header check is the one every decode goes through (images.check_header, used
by predict, the crawler and augment): the same signatures, header readers and pixel
bound; predict and the crawler use validate's default bounds (images.DEFAULT_MAX_PIXELS,
images.MAX_POSTER_BYTES).

A poster path that leads out of the data folder (`../`, or an absolute path elsewhere) is
never opened: it is measured as a missing poster (`exists=False`, problem "poster path
leaves the data folder"), so the `poster_exists` rule reports it like any poster that is not
in the data set (soft by default: the row goes to rejects.csv). The check is on the path
as written, not on symlinks: a data folder whose `posters/` is a symlink (DVC's symlink
cache type, a shared poster store) is the folder owner's choice and keeps working.

An alpha channel is not a problem: an RGBA PNG is a colour poster whose alpha every reader
drops (images.drop_alpha), so it passes `poster_channels`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from postergenre.data.images import (
    POSTER_FORMATS,
    PosterDecodeError,
    decode_threads,
    drop_alpha,
    header_size,
    image_format,
    pixel_problem,
    read_poster_file,
)
from postergenre.data.phash import phash
from postergenre.progress import track

OUTSIDE_DATA_FOLDER = "poster path leaves the data folder"

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"


@dataclass(frozen=True)
class PosterProbe:
    """What `validate` knows about one poster file (None = not measured)."""

    exists: bool
    file_size: int | None = None
    width: int | None = None
    height: int | None = None
    decodes: bool | None = None
    channels: int | None = None
    phash: str | None = None  # 16 hex digits
    problem: str = ""  # a short human explanation of the first problem found

    @property
    def pixels(self) -> int | None:
        return None if self.width is None or self.height is None else self.width * self.height

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pixels": self.pixels}


def inside(data_dir: str | os.PathLike[str], cell: str) -> Path | None:
    """`data_dir / cell`, or None when the path as written leads out of `data_dir`."""
    root = os.path.normpath(os.path.abspath(data_dir))
    path = os.path.normpath(os.path.join(root, cell))
    return Path(path) if os.path.commonpath([root, path]) == root else None


def _truncated_jpeg(data: bytes) -> bool:
    """A JPEG whose end-of-image marker is missing: OpenCV 'decodes' it, greying the rest."""
    return data.startswith(_JPEG_START) and not data.rstrip(b"\x00\r\n ").endswith(_JPEG_END)


def probe_poster(path: str | os.PathLike[str], max_pixels: int,
                 max_bytes: int | None = None) -> PosterProbe:
    """Measure `path`; never raises for a bad file (the rules report it), only for a bug.
    A file over `max_bytes` (None: no bound) is measured by its size only, never read."""
    path = Path(path)
    if not path.is_file():  # a folder or a FIFO is no poster (and a FIFO would block a read)
        return PosterProbe(exists=False, problem="file not found")
    try:
        # One read: a poster is small, and a pixel bomb is a small file claiming a huge size.
        data = read_poster_file(path, max_bytes)
    except FileNotFoundError:  # removed since the check above
        return PosterProbe(exists=False, problem="file not found")
    except PosterDecodeError as err:  # replaced by a FIFO since, or over the byte bound
        try:
            size = path.stat().st_size
        except OSError:
            size = None
        return PosterProbe(exists=True, file_size=size,
                           problem=str(err).removeprefix(f"{path}: "))
    size = len(data)
    if size == 0:
        return PosterProbe(exists=True, file_size=0, problem="zero-byte file")
    header = header_size(data)
    if header is None:  # never decoded: see the module doc
        kind = image_format(data)
        problem = (f"its {kind} header cannot be read; not decoded" if kind else
                   f"not a {', '.join(POSTER_FORMATS[:-1])} or {POSTER_FORMATS[-1]} file; "
                   "not decoded")
        return PosterProbe(True, size, decodes=False, problem=problem)
    width, height = header
    too_many = pixel_problem(header, max_pixels)
    if too_many:
        return PosterProbe(True, size, width, height, problem=too_many)
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # OpenCV's own limits (a side over 2^20 pixels, say)
        decoded = None
    if decoded is None:
        return PosterProbe(True, size, width, height, decodes=False,
                           problem="OpenCV cannot decode it")
    if _truncated_jpeg(data):
        return PosterProbe(True, size, width, height, decodes=False,
                           problem="truncated JPEG (no end-of-image marker)")
    image = drop_alpha(decoded)
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else int(image.shape[2])
    if channels != 3 or image.dtype != np.uint8:
        return PosterProbe(True, size, width, height, True, channels,
                           problem=f"{channels} channel(s), {image.dtype}")
    # The hash needs grey only: one conversion from OpenCV's BGR, the same grey (and so the
    # same bits) as converting to RGB first.
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return PosterProbe(True, size, width, height, True, 3, f"{phash(grey):016x}")


def probe_posters(
    cells: Sequence[str], data_dir: str | os.PathLike[str], max_pixels: int,
    max_bytes: int | None = None,
) -> list[PosterProbe]:
    """Measure the poster of every `poster` cell (a path relative to `data_dir`), in order;
    a file over `max_bytes` is not read (see `probe_poster`)."""
    def one(cell: str) -> PosterProbe:
        if not cell.strip():
            return PosterProbe(exists=False, problem="empty poster path")
        path = inside(data_dir, cell)
        if path is None:  # never opened: see the module doc
            return PosterProbe(exists=False, problem=OUTSIDE_DATA_FOLDER)
        return probe_poster(path, max_pixels, max_bytes)

    # OpenCV and file reads release the GIL: threads use every core without pickling images.
    with ThreadPoolExecutor(max_workers=decode_threads()) as pool:
        return list(track(pool.map(one, cells, chunksize=32), "validate posters", "poster",
                          total=len(cells)))
