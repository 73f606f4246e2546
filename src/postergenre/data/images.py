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

One guard before every decode (issue 24): `read_poster_file` opens a poster without
waiting (a FIFO would block the read forever), refuses what is not a regular file and a
file over its byte cap before reading it, and `decode_scaled` (under every decode here)
checks the header first (`check_header`): only the formats a poster is meant to be
(`POSTER_FORMATS`, told by their signature, as OpenCV picks its decoder) are decoded, a
header that cannot be read is refused (never taken for "no size"), and so is a header
claiming more than `max_pixels` (a decompression bomb: OpenCV would allocate width x
height x 3 bytes for it). Each refusal is a PosterDecodeError naming the file. The
defaults are validate's (`ValidateConfig`): `MAX_POSTER_BYTES` and `DEFAULT_MAX_PIXELS`.
"""

from __future__ import annotations

import io
import math
import os
import stat
import struct
import warnings
from typing import Any

import cv2
import numpy as np

from postergenre.configs import ValidateConfig

# The formats a poster may be (what TMDb serves and poster dumps hold), told by their
# signature: a file of any other kind (a Radiance .hdr, OpenEXR, TIFF, ...) is refused
# though OpenCV could decode it.
POSTER_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WebP", "BMP")
# validate's default bounds, for every reader without a ValidateConfig (predict, the
# crawler): one byte cap for files and downloads alike, one pixel bound.
MAX_POSTER_BYTES: int = ValidateConfig().max_file_bytes
DEFAULT_MAX_PIXELS: int = ValidateConfig().max_pixels


class PosterDecodeError(ValueError):
    """A poster that cannot be used: not a regular file, larger than the cap, not one of
    POSTER_FORMATS, a header that cannot be read or claims too many pixels, or pixels
    OpenCV cannot decode. The message names the file."""


class TooManyPixelsError(PosterDecodeError):
    """A header claiming more pixels than allowed: refused before decoding."""


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
    more lenient reader is the fallback, see `header_size`)."""
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


def image_format(data: bytes) -> str | None:
    """Which of POSTER_FORMATS `data` is, from its signature (the one OpenCV also picks
    its decoder by); None for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data.startswith(b"BM"):
        return "BMP"
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    # IHDR is the first chunk, always: no text chunk (however large) is read before it.
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _webp_size(data: bytes) -> tuple[int, int] | None:
    kind, body = data[12:16], data[20:30]
    if kind == b"VP8X" and len(body) >= 10:  # extended: the canvas size, 24 bits each
        return (int.from_bytes(body[4:7], "little") + 1,
                int.from_bytes(body[7:10], "little") + 1)
    if kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:  # lossless: 14 bits each
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":  # lossy
        return (int.from_bytes(body[6:8], "little") & 0x3FFF,
                int.from_bytes(body[8:10], "little") & 0x3FFF)
    return None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26:
        return None
    if int.from_bytes(data[14:18], "little") == 12:  # OS/2 BITMAPCOREHEADER: 16 bits
        return int.from_bytes(data[18:20], "little"), int.from_bytes(data[20:22], "little")
    width, height = struct.unpack("<ii", data[18:26])
    return width, abs(height)  # a negative height is a top-down bitmap


def _pillow_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Pillow's (more lenient) reading of a JPEG header, as JPEG only; None if it fails."""
    from PIL import Image  # only here: augment's workers seldom need it

    # The pixel bound is ours (check_header): Pillow's would refuse to tell the size.
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return image.size
    except Exception:  # noqa: BLE001 - any header Pillow cannot read: refused by the caller
        return None


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a poster in one of POSTER_FORMATS, without
    decoding; None when `data` is none of them or its header cannot be read."""
    kind = image_format(data)
    readers: dict[str, Any] = {"PNG": _png_size, "WebP": _webp_size, "BMP": _bmp_size}
    if kind == "JPEG":
        size = jpeg_size(data) or _pillow_jpeg_size(data)
    else:
        size = readers[kind](data) if kind in readers else None
    return size if size and size[0] > 0 and size[1] > 0 else None


def check_header(data: bytes, source: str, max_pixels: int | None = DEFAULT_MAX_PIXELS
                 ) -> tuple[int, int]:
    """(width, height) of a poster whose header allows decoding it; PosterDecodeError
    naming `source` otherwise (see the module doc). `max_pixels` None: no pixel bound."""
    kind = image_format(data)
    if kind is None:
        raise PosterDecodeError(f"{source}: not a decodable image (not a "
                                f"{', '.join(POSTER_FORMATS[:-1])} or {POSTER_FORMATS[-1]} "
                                "file)")
    size = header_size(data)
    if size is None:
        raise PosterDecodeError(f"{source}: not a decodable image (its {kind} header cannot "
                                "be read); refused before decoding")
    too_many = pixel_problem(size, max_pixels)
    if too_many:
        raise TooManyPixelsError(f"{source}: {too_many}; refused before decoding")
    return size


def pixel_problem(size: tuple[int, int], max_pixels: int | None) -> str | None:
    """'WxH pixels exceeds N' when a header claims more than `max_pixels`, else None."""
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        return f"{width}x{height} pixels exceeds {max_pixels}"
    return None


def read_poster_file(path: str | os.PathLike[str], max_bytes: int | None = MAX_POSTER_BYTES
                     ) -> bytes:
    """A poster file's bytes. Refused (PosterDecodeError naming it) without reading: what
    is not a regular file (a FIFO, a device) and a file over `max_bytes` (None: no cap).
    Opened without waiting: opening a FIFO to read would block until a writer came."""
    name = os.fspath(path)
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PosterDecodeError(f"{name}: not a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise PosterDecodeError(f"{name}: larger than {max_bytes} bytes")
        data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:  # it grew while being read
        raise PosterDecodeError(f"{name}: larger than {max_bytes} bytes")
    return data


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


def read_scaled(path: str | os.PathLike[str], min_side: int = 0, *,
                max_bytes: int | None = MAX_POSTER_BYTES,
                max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, int]:
    """`read_rgb`, and the scale (1, 2, 4 or 8) the JPEG decoder divided the image by.
    The file is read by `read_poster_file`, its header checked by `check_header`."""
    data = read_poster_file(path, max_bytes)
    return decode_scaled(data, os.fspath(path), min_side, max_pixels)


def decode_rgb(data: bytes, source: str = "<bytes>", min_side: int = 0,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes to RGB uint8 (H, W, 3), once `check_header` allows it.

    `min_side` > 0: the caller only needs both sides at least this long (it resizes to a
    `min_side` square next), so a JPEG may decode at 1/2, 1/4 or 1/8 scale, never below
    `min_side` on either side (EXIF rotation swaps the sides, not the shorter one's length).
    """
    return decode_scaled(data, source, min_side, max_pixels)[0]


def decode_scaled(data: bytes, source: str = "<bytes>", min_side: int = 0,
                  max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, int]:
    """`decode_rgb`, and the scale (1, 2, 4 or 8) the JPEG decoder divided the image by."""
    check_header(data, source, max_pixels)
    factor = scale_factor(jpeg_size(data), min_side) if min_side > 0 else 1
    try:
        rgb = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _RGB_FLAGS[factor])
    except cv2.error as err:  # OpenCV's own limits (a side over 2^20 pixels, say)
        reason = str(err).strip().splitlines()[-1].split("error: ", 1)[-1].strip()
        raise PosterDecodeError(f"{source}: not a decodable image (OpenCV: {reason})") \
            from None
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
