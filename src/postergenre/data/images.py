"""Image decoding and encoding, with the BGR/RGB swap done here and nowhere else.

OpenCV decodes to BGR, uint8, HWC. Everything past this module sees RGB uint8 HWC
(what TensorFlow's `decode_jpeg` returns too), so the channel order can never be
mixed up between a stage that writes shards and a model that reads them.

An alpha channel (an RGBA PNG export of a poster) is dropped, never composited: posters
are opaque artwork, and dropping it is what every decoder here already does (OpenCV's
IMREAD_COLOR in `decode_rgb`, TensorFlow's `decode_image(channels=3)` in shards.py).
`drop_alpha` is that rule for a decode that keeps every channel (validate's probe), so
validate accepts exactly the files predict and augment read.

Speed (issue 14): the decoder writes RGB itself (`IMREAD_COLOR_RGB`, pixel for pixel the
BGR decode swapped), so decoding costs no separate colour conversion. A stage that only
needs a small image passes `min_side`: a JPEG whose header (`jpeg_size`, read from the
bytes before decoding) shows both sides at least 2, 4 or 8 times `min_side` is decoded at
1/2, 1/4 or 1/8 scale inside libjpeg (the IDCT computes the smaller image directly), so
full-size pixels are never made and a resize then has less to shrink. The result is close
to, not equal to, a full decode shrunk to the same size (tests/test_decode.py states the
tolerance); every other format, and a JPEG too small to reduce, decodes at full size.
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np


class PosterDecodeError(ValueError):
    """A file that OpenCV cannot decode as a colour image."""


def drop_alpha(image: np.ndarray) -> np.ndarray:
    """A decoded (h, w, 4) image without its alpha channel; any other image unchanged."""
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    return image


# JPEG frame headers (SOF0-SOF15 except DHT C4, JPG C8, DAC CC) hold the image size.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM and the restart markers RST0-RST7.
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
_SCALE_FACTORS = (8, 4, 2)
# The reduced flags carry IMREAD_COLOR (BGR); OpenCV refuses BGR and RGB together.
_RGB_FLAGS = {
    1: cv2.IMREAD_COLOR_RGB,
    2: (cv2.IMREAD_REDUCED_COLOR_2 & ~cv2.IMREAD_COLOR) | cv2.IMREAD_COLOR_RGB,
    4: (cv2.IMREAD_REDUCED_COLOR_4 & ~cv2.IMREAD_COLOR) | cv2.IMREAD_COLOR_RGB,
    8: (cv2.IMREAD_REDUCED_COLOR_8 & ~cv2.IMREAD_COLOR) | cv2.IMREAD_COLOR_RGB,
}


_CGROUP = "/sys/fs/cgroup"


def _read_words(path: str) -> list[str]:
    with open(path) as handle:
        return handle.read().split()


def _cgroup_cpu_limit(root: str = _CGROUP) -> int | None:
    """The CPUs this cgroup's quota allows (2.0 CPUs of quota per period -> 2, 1.5 -> 2),
    None when unlimited or unknown. A Kubernetes CPU limit is such a quota: the pod sees
    every CPU of the node but may use only this many. cgroup v2 keeps it in `cpu.max`
    ("200000 100000", or "max ..." when unlimited); v1 (EKS's Amazon Linux 2 nodes among
    others) in `cpu.cfs_quota_us` (-1 when unlimited) and `cpu.cfs_period_us`."""
    try:
        quota, period = _read_words(f"{root}/cpu.max")[:2]
        unlimited = quota == "max"
    except (OSError, ValueError):
        for folder in (f"{root}/cpu,cpuacct", f"{root}/cpu"):
            try:
                quota = _read_words(f"{folder}/cpu.cfs_quota_us")[0]
                period = _read_words(f"{folder}/cpu.cfs_period_us")[0]
                unlimited = int(quota) < 0
                break
            except (OSError, ValueError, IndexError):
                continue
        else:
            return None
    try:
        return None if unlimited else max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask (which a container's cpuset
    narrows, else the machine's count), capped by a cgroup CPU quota (a pod's limit)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    return max(1, min(cpus, limit) if limit else cpus)


def decode_threads() -> int:
    """Threads for a pool of decodes: one per available CPU plus one, so a file read
    never leaves a core idle. OpenCV releases the GIL while it decodes."""
    return available_cpus() + 1


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, without decoding (a few markers read);
    None when `data` is not a JPEG, or no frame header comes before the scan (Pillow's
    more lenient reader is the fallback, see probe.header_size)."""
    if not data.startswith(b"\xff\xd8"):
        return None
    i, end = 2, len(data)
    while i + 4 <= end:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte before the marker
            i += 1
            continue
        if marker in _STANDALONE_MARKERS:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or a scan, before any frame header
            return None
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            if i + 9 > end:
                return None
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            # Height 0 means a DNL marker after the first scan sets it: not in the header.
            return (width, height) if width and height else None
        i += 2 + length
    return None


def scale_factor(size: tuple[int, int] | None, min_side: int) -> int:
    """The largest of 8, 4, 2 that keeps both sides of `size` (width, height) at least
    `min_side` after dividing by it; 1 when none does, or `size` is unknown."""
    if size is None or min_side <= 0:
        return 1
    return next((f for f in _SCALE_FACTORS if min(size) >= min_side * f), 1)


def read_rgb(path: str | os.PathLike[str], min_side: int = 0) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3); raise PosterDecodeError naming it.
    `min_side` > 0 lets a large JPEG decode at reduced scale (see `decode_rgb`)."""
    return read_scaled(path, min_side)[0]


def read_scaled(path: str | os.PathLike[str], min_side: int = 0) -> tuple[np.ndarray, int]:
    """`read_rgb`, and the scale (1, 2, 4 or 8) the JPEG decoder divided the image by."""
    with open(os.fspath(path), "rb") as handle:
        data = handle.read()
    return decode_scaled(data, source=os.fspath(path), min_side=min_side)


def decode_rgb(data: bytes, source: str = "<bytes>", min_side: int = 0) -> np.ndarray:
    """Decode encoded image bytes to RGB uint8 (H, W, 3).

    `min_side` > 0: the caller only needs both sides at least this long (it resizes to a
    `min_side` square next), so a JPEG may decode at 1/2, 1/4 or 1/8 scale, never below
    `min_side` on either side (EXIF rotation swaps the sides, not the shorter one's length).
    """
    return decode_scaled(data, source, min_side)[0]


def decode_scaled(data: bytes, source: str = "<bytes>", min_side: int = 0
                  ) -> tuple[np.ndarray, int]:
    """`decode_rgb`, and the scale (1, 2, 4 or 8) the JPEG decoder divided the image by."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    factor = scale_factor(jpeg_size(data), min_side) if min_side > 0 else 1
    rgb = cv2.imdecode(buffer, _RGB_FLAGS[factor]) if buffer.size else None
    if rgb is None:
        raise PosterDecodeError(f"{source}: not a decodable image")
    return rgb, factor


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode an RGB uint8 image as JPEG bytes (OpenCV's encoder expects BGR)."""
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise ValueError("OpenCV failed to encode a JPEG")
    return encoded.tobytes()


def resize(rgb: np.ndarray, size: int, prefiltered: bool = False) -> np.ndarray:
    """Resize to a `size` x `size` square, as the study's models take (aspect not kept).

    INTER_AREA, the antialiased shrink, by default. `prefiltered`: the image is a JPEG
    decoded at reduced scale (`decode_scaled`), whose IDCT has already averaged away the
    detail a 2x, 4x or 8x shrink drops; when less than 2x is left to shrink on each side,
    bilinear finishes it. OpenCV's INTER_AREA at a non-integer ratio is slow (1.1 ms
    against bilinear's 0.15 ms for a w500 TMDb poster decoded at 1/2 to 224 px, as much
    as the decode), and at under 2x bilinear drops little: tests/test_decode.py bounds
    the difference from a full decode shrunk with INTER_AREA.
    """
    height, width = rgb.shape[:2]
    if prefiltered and height < 2 * size and width < 2 * size:
        return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)


def hflip(rgb: np.ndarray) -> np.ndarray:
    """Mirror an image left to right."""
    return np.ascontiguousarray(rgb[:, ::-1, :])


def random_crop(rgb: np.ndarray, rng: np.random.Generator, min_scale: float) -> np.ndarray:
    """A random crop keeping `min_scale`..1 of each side (resize back happens afterwards)."""
    height, width = rgb.shape[:2]
    scale = rng.uniform(min_scale, 1.0)
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    return rgb[top : top + h, left : left + w]


def colour_jitter(rgb: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Small random brightness, contrast and saturation changes (each within +-strength)."""
    image = rgb.astype(np.float32)
    grey = image.mean(axis=2, keepdims=True)
    image = grey + (image - grey) * (1 + rng.uniform(-strength, strength))  # saturation
    image = (image - image.mean()) * (1 + rng.uniform(-strength, strength)) + image.mean()
    image = image + 255.0 * rng.uniform(-strength, strength) / 2  # brightness
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
