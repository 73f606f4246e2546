"""Image decoding and encoding, with the BGR/RGB swap done here and nowhere else.

OpenCV decodes to BGR, uint8, HWC. Everything past this module sees RGB uint8 HWC
(what TensorFlow's `decode_jpeg` returns too), so the channel order can never be
mixed up between a stage that writes shards and a model that reads them.

An alpha channel (an RGBA PNG export of a poster) is dropped, never composited: posters
are opaque artwork, and dropping it is what every decoder here already does (OpenCV's
IMREAD_COLOR in `decode_rgb`, TensorFlow's `decode_image(channels=3)` in shards.py).
`drop_alpha` is that rule for a decode that keeps every channel (validate's probe), so
validate accepts exactly the files predict and augment read.
"""

from __future__ import annotations

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


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3); raise PosterDecodeError naming it."""
    data = np.fromfile(os.fspath(path), dtype=np.uint8)
    return decode_rgb(data.tobytes(), source=os.fspath(path))


def decode_rgb(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to RGB uint8 (H, W, 3)."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if bgr is None:
        raise PosterDecodeError(f"{source}: not a decodable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode an RGB uint8 image as JPEG bytes (OpenCV's encoder expects BGR)."""
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise ValueError("OpenCV failed to encode a JPEG")
    return encoded.tobytes()


def resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize to a `size` x `size` square, as the study's models take (aspect not kept)."""
    # INTER_AREA is the right filter for shrinking posters; it avoids aliasing.
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
