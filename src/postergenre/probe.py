"""Measure poster files for `validate`: size, header dimensions, decodability, hash.

Checks run cheapest first and stop as soon as a later one would be meaningless or unsafe:
the pixel count comes from the file header (Pillow reads headers without decoding), so a
decompression bomb (a small file claiming 20000x20000 pixels) is caught before OpenCV is
asked to allocate it. Values that could not be measured are None, so only the rule that
explains the problem fires for a row (great-expectations skips nulls in column rules).
`probe_posters` measures a whole labels table's posters on a thread pool.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from postergenre.phash import phash

# We enforce our own pixel bound from the header; Pillow's (a warning at 89 Mpx) would only
# add noise, and its hard limit would turn a clean rule failure into an exception.
Image.MAX_IMAGE_PIXELS = None

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


def _header_size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as image, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return image.size
    except Exception:  # noqa: BLE001 - any header Pillow cannot read: the decode rule reports it
        return None


def _truncated_jpeg(data: bytes) -> bool:
    """A JPEG whose end-of-image marker is missing: OpenCV 'decodes' it, greying the rest."""
    return data.startswith(_JPEG_START) and not data.rstrip(b"\x00\r\n ").endswith(_JPEG_END)


def probe_poster(path: str | os.PathLike[str], max_pixels: int) -> PosterProbe:
    """Measure `path`; never raises for a bad file (the rules report it), only for a bug."""
    path = Path(path)
    if not path.is_file():
        return PosterProbe(exists=False, problem="file not found")
    size = path.stat().st_size
    if size == 0:
        return PosterProbe(exists=True, file_size=0, problem="zero-byte file")
    header = _header_size(path)
    width, height = header if header else (None, None)
    if header and width * height > max_pixels:
        return PosterProbe(True, size, width, height,
                           problem=f"{width}x{height} pixels exceeds {max_pixels}")
    data = path.read_bytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        return PosterProbe(True, size, width, height, decodes=False,
                           problem="OpenCV cannot decode it")
    if _truncated_jpeg(data):
        return PosterProbe(True, size, width, height, decodes=False,
                           problem="truncated JPEG (no end-of-image marker)")
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else int(image.shape[2])
    if channels != 3 or image.dtype != np.uint8:
        return PosterProbe(True, size, width, height, True, channels,
                           problem=f"{channels} channel(s), {image.dtype}")
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return PosterProbe(True, size, width, height, True, 3, f"{phash(rgb):016x}")


def probe_posters(
    cells: Sequence[str], data_dir: str | os.PathLike[str], max_pixels: int
) -> list[PosterProbe]:
    """Measure the poster of every `poster` cell (a path relative to `data_dir`), in order."""
    data_dir = Path(data_dir)

    def one(cell: str) -> PosterProbe:
        if not cell.strip():
            return PosterProbe(exists=False, problem="empty poster path")
        return probe_poster(data_dir / cell, max_pixels)

    # OpenCV and file reads release the GIL: threads use every core without pickling images.
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 1)) as pool:
        return list(tqdm(pool.map(one, cells, chunksize=32), total=len(cells),
                         desc="validate posters", unit="poster", disable=None))
