"""`postergenre predict`: genres with probabilities for posters (files, folders, URLs).

The model is the registry's latest blessed entry (with the per-genre decision thresholds
evaluate chose on validation) or a given model folder. A poster that cannot be read or
decoded is reported on its own row and the batch goes on. `explain_dir` gets a Grad-CAM
overlay per poster (where the model looked for its top genre).

Every poster's header is checked before it is decoded (probe.check_pixels, validate's
check and bound): a small file declaring 20000x20000 pixels would make OpenCV allocate
over a gigabyte. It is refused on its own row; the other posters are scored.

A registry entry (given as a folder, or the registry's latest) is verified against the
sha256 hashes it was registered with, and must hold its thresholds.json: serving an entry
with 0.5 for every genre instead of the thresholds it was blessed with would be a silent
change of the model's behaviour. Only a bare trained model folder, which never had
thresholds, falls back to 0.5 (with a warning).
"""

from __future__ import annotations

import csv
import logging
import os
import re
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from postergenre.atomic import atomic_open
from postergenre.genres import GENRES
from postergenre.images import decode_rgb, resize
from postergenre.probe import DEFAULT_MAX_PIXELS, check_pixels

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
MAX_DOWNLOAD = 20 * 1024 * 1024  # a poster is well under this; refuse anything larger
DEFAULT_THRESHOLD = 0.5


@dataclass
class Predictor:
    """A loaded model and its decision thresholds."""

    model: object
    thresholds: np.ndarray
    source: str
    image_size: int = field(init=False)

    def __post_init__(self) -> None:
        self.image_size = int(self.model.input_shape[1])


@dataclass
class PosterResult:
    poster: str
    probabilities: np.ndarray | None = None
    genres: list[str] = field(default_factory=list)
    error: str | None = None


def load_predictor(model_dir: str | os.PathLike[str] | None = None,
                   registry: str | os.PathLike[str] | None = None) -> Predictor:
    """The given model folder (a trained model, a registry entry or an entry's model/),
    else the registry's latest blessed model.

    A registry entry is verified (registry.verify_entry) and its thresholds.json is
    required; a bare trained model gets thresholds.json beside it if any, else 0.5.
    """
    from postergenre.registry import (
        MODEL_FOLDER,
        entry_of,
        fetch_latest,
        read_thresholds,
        require_thresholds,
        verify_entry,
    )

    if model_dir is None:
        if registry is None:
            raise ValueError("predict needs a model folder or a registry")
        entry = fetch_latest(registry)  # verified
        if entry is None:
            raise FileNotFoundError(f"registry {registry} holds no blessed model yet")
        model_dir = entry
    else:
        entry = entry_of(model_dir)
        if entry is not None:
            verify_entry(entry)
    folder = Path(model_dir)
    if entry is not None:
        saved = require_thresholds(entry)
        model_path = entry / MODEL_FOLDER
    else:
        model_path = folder
        saved = read_thresholds(folder.parent)
        if not (saved and saved.get("per_genre")):
            log.warning("%s has no thresholds.json: using %.1f for every genre", folder,
                        DEFAULT_THRESHOLD)
            saved = {"per_genre": dict.fromkeys(GENRES, DEFAULT_THRESHOLD)}
    missing = [g for g in GENRES if g not in saved["per_genre"]]
    if missing:
        raise ValueError(f"{entry or folder.parent}/thresholds.json: per_genre thresholds "
                         f"lack {', '.join(missing)}")
    thresholds = np.array([float(saved["per_genre"][g]) for g in GENRES])
    from postergenre.train import load_model  # TensorFlow: only once the entry checked out

    model = load_model(model_path)
    return Predictor(model, thresholds, str(folder))


def expand_posters(inputs: Iterable[str]) -> list[str]:
    """Paths, folders (their image files, sorted) and http(s) URLs, as one list."""
    posters: list[str] = []
    for item in inputs:
        path = Path(item)
        if not re.match(r"^https?://", item) and path.is_dir():
            posters += sorted(str(p) for p in path.iterdir()
                              if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            posters.append(item)
    return posters


def read_poster(source: str, timeout: float = 20.0,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a poster file or http(s) URL to RGB uint8; errors name the poster.

    The header's pixel count is checked first: a file claiming more than `max_pixels`
    is refused (ValueError) before anything is allocated for its pixels.
    """
    if re.match(r"^https?://", source):
        try:
            with urllib.request.urlopen(source, timeout=timeout) as response:  # noqa: S310
                data = response.read(MAX_DOWNLOAD + 1)
        except (OSError, ValueError) as err:
            raise ValueError(f"{source}: cannot download ({err})") from None
        if len(data) > MAX_DOWNLOAD:
            raise ValueError(f"{source}: larger than {MAX_DOWNLOAD} bytes")
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as err:
            raise ValueError(f"{source}: cannot read ({err.strerror or err})") from None
    check_pixels(data, source, max_pixels)
    return decode_rgb(data, source=source)


def _batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _explain_name(index: int, poster: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(poster.split("?")[0]).stem)[:60] or "poster"
    return f"{index:05d}-{stem}.gradcam.png"


def predict_posters(predictor: Predictor, posters: Sequence[str], batch_size: int = 32,
                    explain_dir: str | os.PathLike[str] | None = None,
                    progress: bool = True) -> list[PosterResult]:
    """Score every poster; a bad one gets an error and the others go on."""
    import cv2

    results: list[PosterResult] = []
    if explain_dir:
        Path(explain_dir).mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(posters), desc="predict", unit="poster", disable=not progress)
    for batch in _batches(list(posters), batch_size):
        good, images = [], []
        for poster in batch:
            result = PosterResult(poster)
            results.append(result)
            try:
                images.append(resize(read_poster(poster), predictor.image_size))
                good.append(result)
            except ValueError as err:
                result.error = str(err)
                log.warning("predict: %s", err)
        if good:
            pixels = np.stack(images).astype(np.float32)
            probabilities = np.asarray(predictor.model.predict_on_batch(pixels), np.float64)
            for result, p in zip(good, probabilities, strict=True):
                result.probabilities = p
                result.genres = [g for g, on in zip(GENRES, p >= predictor.thresholds,
                                                    strict=True) if on]
            if explain_dir:
                from postergenre.gradcam import gradcam, overlay

                heat = gradcam(predictor.model, pixels, probabilities.argmax(axis=1))
                for result, image, h in zip(good, images, heat, strict=True):
                    name = _explain_name(results.index(result), result.poster)
                    cv2.imwrite(str(Path(explain_dir) / name),
                                cv2.cvtColor(overlay(image, h), cv2.COLOR_RGB2BGR))
        bar.update(len(batch))
    bar.close()
    return results


def write_predictions_csv(results: Sequence[PosterResult], path: str | os.PathLike[str]) -> Path:
    """One row per poster: poster, error, predicted genres, then 19 probabilities."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["poster", "error", "genres", *GENRES])
        for r in results:
            probabilities = ([f"{p:.6f}" for p in r.probabilities]
                             if r.probabilities is not None else [""] * len(GENRES))
            writer.writerow([r.poster, r.error or "", "|".join(r.genres), *probabilities])
    return Path(path)


def format_result(result: PosterResult, top: int = 5) -> str:
    """One line: the predicted genres, then the top probabilities."""
    if result.error:
        return f"{result.poster}: ERROR {result.error}"
    order = np.argsort(-result.probabilities)[:top]
    ranked = ", ".join(f"{GENRES[g]} {result.probabilities[g]:.2f}" for g in order)
    return f"{result.poster}: {', '.join(result.genres) or '(no genre)'}  [{ranked}]"
