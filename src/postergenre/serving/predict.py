"""`postergenre predict`: genres with probabilities for posters (files, folders, URLs).

The model is the registry's latest blessed entry (with the per-genre decision thresholds
evaluate chose on validation) or a given model folder. A poster that cannot be read or
decoded is reported on its own row and the batch goes on. `explain_dir` gets a Grad-CAM
overlay per poster (where the model looked for its top genre).

A poster is scored on exactly what evaluate scored for it: `render.prepare_poster` makes
the JPEG the shards store (at the side and quality in the model's metadata.json), and
`shards.decode_prepared` decodes and resizes it as training and evaluate do.

Every poster goes through the one guard of images.py, with validate's default bounds: a
file or a download over `MAX_POSTER_BYTES` is refused before it is read whole, a file
that is not a regular file (a FIFO would block the read) is never read, and the header is
checked before anything is decoded (images.check_header): only JPEG, PNG, WebP and BMP
are decoded, and a small file declaring 20000x20000 pixels (OpenCV would allocate over a
gigabyte) is refused. A refused or undecodable poster is one error on its own row, one
line in the log; the other posters are scored. A poster smaller than validate's minimum
side is scored with a warning (what the model sees of it is mostly interpolation).

A registry entry (given as a folder, or the registry's latest) is verified against the
sha256 hashes it was registered with, and must hold its thresholds.json: serving an entry
with 0.5 for every genre instead of the thresholds it was blessed with would be a silent
change of the model's behaviour. Only a bare trained model folder, which never had
thresholds, falls back to 0.5 (with a warning).

`Predictor.info` says what is served: the model's name, the registry entry, the data
version it was trained on and whether that was the demo's synthetic posters (a model
trained on them gives every real poster about the same genres: a warning, in the log and
in `predict_output`'s JSON), and the thresholds file with its sha256.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from postergenre.atomic import atomic_open
from postergenre.configs import ValidateConfig
from postergenre.data.images import (
    MAX_POSTER_BYTES,
    PosterDecodeError,
    decode_rgb,
    header_size,
    read_poster_file,
)
from postergenre.data.render import prepare_poster
from postergenre.data.shards import decode_prepared
from postergenre.genres import GENRES
from postergenre.progress import Progress

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
DEFAULT_THRESHOLD = 0.5
# validate's smallest poster side: a smaller one is scored with a warning.
MIN_SIDE = min(ValidateConfig().min_width, ValidateConfig().min_height)


@dataclass(frozen=True)
class ModelInfo:
    """What a Predictor serves: enough to find the model again and to judge its answers."""

    name: str
    path: str  # the folder served: a registry entry, or a bare trained model folder
    entry: str | None = None  # the registry entry's name: `<model>-<content hash>`
    registered_at: str | None = None
    data_version: str | None = None  # the md5 DVC recorded for the training data
    data_source: str | None = None  # "demo", "real", or None when nothing recorded it
    thresholds: str | None = None  # thresholds.json served; None: 0.5 for every genre
    thresholds_sha256: str | None = None

    @property
    def warnings(self) -> list[str]:
        """What a reader of the predictions must know about the model."""
        found = []
        if self.data_source == "demo":
            found.append(f"model {self.entry or self.path} was trained on the demo data "
                         f"(synthetic posters, data version {self.data_version}): its "
                         "genres for real posters mean nothing")
        if self.thresholds is None:
            found.append(f"{self.path}: no thresholds.json; every genre uses "
                         f"{DEFAULT_THRESHOLD}")
        return found


@dataclass
class Predictor:
    """A loaded model and its decision thresholds."""

    model: Any  # a keras.Model (not imported here: TensorFlow loads only when used)
    thresholds: np.ndarray
    source: str
    info: ModelInfo | None = None
    # (side, JPEG quality) of the prepared posters the model was trained and evaluated
    # on (metadata.json's `poster`); (0, 0): the model's own side, at the default quality.
    poster: tuple[int, int] = (0, 0)
    image_size: int = field(init=False)

    def __post_init__(self) -> None:
        from postergenre.training.outputs import stored_poster

        self.image_size = int(self.model.input_shape[1])
        if self.poster == (0, 0):
            self.poster = stored_poster({"image_size": self.image_size})
        if self.info is None:
            self.info = ModelInfo(name=Path(self.source).name, path=self.source)


@dataclass
class PosterResult:
    poster: str
    probabilities: np.ndarray | None = None
    genres: list[str] = field(default_factory=list)
    error: str | None = None
    explanation: str | None = None  # the Grad-CAM overlay written for it, if any
    warning: str | None = None  # scored, but see this (a poster too small to mean much)


def no_blessed_model(registry: str | os.PathLike[str]) -> FileNotFoundError:
    """The error for a registry with no model to serve, in plain words: there is no
    registry there at all, or nothing was blessed into it yet."""
    from postergenre.data.storage import is_remote

    # An absolute path: "no registry at registry" would not say which folder was looked at.
    where = str(registry) if is_remote(registry) else str(Path(registry).absolute())
    if not is_remote(registry) and not Path(registry).exists():
        return FileNotFoundError(
            f"no registry at {where}: nothing has been registered yet (`make run` registers "
            "the model the gate blesses); or give a model folder with --model")
    return FileNotFoundError(f"the registry at {where} holds no blessed model yet (the gate "
                             "has blessed none); give a model folder with --model")


def require_blessed_model(registry: str | os.PathLike[str]) -> None:
    """Fail at once (no_blessed_model) unless `registry` points at a blessed model; a
    remote registry is asked when it is read."""
    from postergenre.data.storage import is_remote
    from postergenre.serving.registry import read_latest

    if not is_remote(registry) and read_latest(registry) is None:
        raise no_blessed_model(registry)


def load_predictor(model_dir: str | os.PathLike[str] | None = None,
                   registry: str | os.PathLike[str] | None = None) -> Predictor:
    """The given model folder (a trained model, a registry entry or an entry's model/),
    else the registry's latest blessed model.

    A registry entry is verified (registry.verify_entry) and its thresholds.json is
    required; a bare trained model gets thresholds.json beside it if any, else 0.5.
    """
    from postergenre.serving.registry import (
        ENTRY_FILE,
        MODEL_FOLDER,
        THRESHOLDS_FILE,
        entry_of,
        fetch_latest,
        file_sha256,
        read_thresholds,
        require_thresholds,
        verify_entry,
    )

    if model_dir is None:
        if registry is None:
            raise ValueError("predict needs a model folder or a registry")
        entry = fetch_latest(registry)  # verified
        if entry is None:
            raise no_blessed_model(registry)
        model_dir = entry
        entry_info = json.loads((entry / ENTRY_FILE).read_text())
    else:
        entry = entry_of(model_dir)
        entry_info = verify_entry(entry) if entry is not None else None
    folder = Path(model_dir)
    if entry is not None:
        saved: dict | None = require_thresholds(entry)
        model_path = entry / MODEL_FOLDER
        thresholds_path: Path | None = entry / THRESHOLDS_FILE
    else:
        model_path = folder
        saved = read_thresholds(folder.parent)
        thresholds_path = folder.parent / THRESHOLDS_FILE
        if not (saved and saved.get("per_genre")):
            log.warning("%s has no thresholds.json: using %.1f for every genre", folder,
                        DEFAULT_THRESHOLD)
            saved = {"per_genre": dict.fromkeys(GENRES, DEFAULT_THRESHOLD)}
            thresholds_path = None
    assert saved is not None
    missing = [g for g in GENRES if g not in saved["per_genre"]]
    if missing:
        raise ValueError(f"{entry or folder.parent}/thresholds.json: per_genre thresholds "
                         f"lack {', '.join(missing)}")
    thresholds = np.array([float(saved["per_genre"][g]) for g in GENRES])
    # TensorFlow loads only once the entry checked out.
    from postergenre.training.outputs import METADATA_FILE, load_model, stored_poster

    metadata_path = model_path / METADATA_FILE
    metadata = json.loads(metadata_path.read_text()) if metadata_path.is_file() else {}
    info = _model_info(entry, entry_info, metadata, model_path, thresholds_path,
                       file_sha256(thresholds_path) if thresholds_path else None)
    if info.data_source == "demo":  # (no thresholds: logged above)
        log.warning("predict: %s", info.warnings[0])
    model = load_model(model_path)
    poster = stored_poster(metadata) if metadata else (0, 0)
    return Predictor(model, thresholds, str(folder), info, poster)


def _model_info(entry: Path | None, entry_info: dict | None, metadata: dict,
                model_path: Path, thresholds_path: Path | None,
                thresholds_sha256: str | None) -> ModelInfo:
    """The entry's record (entry.json), or what a bare model folder says of itself (its
    metadata.json, `metadata`)."""
    record = entry_info or {}
    return ModelInfo(
        name=str(record.get("model") or metadata.get("model") or model_path.name),
        path=str(entry or model_path),
        entry=record.get("entry"),
        registered_at=record.get("registered_at"),
        # The entry's data version is what register read from data.dvc; a bare model
        # has the one training was given (empty when run outside a pipeline).
        data_version=record.get("data_version") or metadata.get("data_version") or None,
        data_source=record.get("data_source"),
        thresholds=str(thresholds_path) if thresholds_path else None,
        thresholds_sha256=thresholds_sha256,
    )


def is_web_url(poster: str) -> bool:
    """Whether a poster is given as an http(s) URL (downloaded) rather than a path."""
    return re.match(r"^https?://", poster) is not None


def expand_posters(inputs: Iterable[str]) -> list[str]:
    """Paths, folders (their image files, sorted) and http(s) URLs, as one list."""
    posters: list[str] = []
    for item in inputs:
        path = Path(item)
        if not is_web_url(item) and path.is_dir():
            posters += sorted(str(p) for p in path.iterdir()
                              if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            posters.append(item)
    return posters


def read_poster(source: str, timeout: float = 20.0) -> bytes:
    """A poster file's or http(s) URL's bytes, up to MAX_POSTER_BYTES and refused beyond;
    errors (ValueError) name the poster."""
    if not is_web_url(source):
        try:
            return read_poster_file(source)
        except OSError as err:
            raise ValueError(f"{source}: cannot read ({err.strerror or err})") from None
    try:
        with urllib.request.urlopen(source, timeout=timeout) as response:  # noqa: S310
            data = response.read(MAX_POSTER_BYTES + 1)
    except (OSError, ValueError) as err:
        raise ValueError(f"{source}: cannot download ({err})") from None
    if len(data) > MAX_POSTER_BYTES:
        raise PosterDecodeError(f"{source}: larger than {MAX_POSTER_BYTES} bytes")
    return data


def _batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _explain_name(index: int, poster: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(poster.split("?")[0]).stem)[:60] or "poster"
    return f"{index:05d}-{stem}.gradcam.png"


def predict_posters(predictor: Predictor, posters: Sequence[str], batch_size: int = 32,
                    explain_dir: str | os.PathLike[str] | None = None) -> list[PosterResult]:
    """Score every poster; a bad one gets an error and the others go on.

    With `explain_dir`, each scored poster gets a Grad-CAM overlay for its top genre, at
    the poster's own aspect ratio and captioned with that genre and its probability.
    """
    results: list[PosterResult] = []
    if explain_dir:
        Path(explain_dir).mkdir(parents=True, exist_ok=True)
    # A bar on a terminal only: piped, the scores are the output and nothing else goes out.
    bar = Progress("predict", len(posters), "poster", lines=False)
    for batch in _batches(list(posters), batch_size):
        good, prepared, originals = [], [], []
        for poster in batch:
            result = PosterResult(poster)
            results.append(result)
            try:
                data = read_poster(poster)
                prepared.append(prepare_poster(data, poster, *predictor.poster))
            except ValueError as err:
                result.error = str(err)
                log.warning("predict: %s", err)
                continue
            width, height = header_size(data) or (MIN_SIDE, MIN_SIDE)
            if min(width, height) < MIN_SIDE:
                result.warning = (f"{poster}: {width}x{height} pixels, smaller than "
                                  f"{MIN_SIDE} on a side: scored, but its genres mean little")
                log.warning("predict: %s", result.warning)
            # The full poster is decoded only for its overlay (a batch of them at most).
            originals.append(decode_rgb(data, poster) if explain_dir else None)
            good.append(result)
        if good:
            pixels = decode_prepared(prepared, predictor.poster[0], predictor.image_size)
            probabilities = np.asarray(predictor.model.predict_on_batch(pixels), np.float64)
            for result, p in zip(good, probabilities, strict=True):
                result.probabilities = p
                result.genres = [g for g, on in zip(GENRES, p >= predictor.thresholds,
                                                    strict=True) if on]
            if explain_dir:
                _explain(predictor, pixels, probabilities, good, originals, results,
                         Path(explain_dir))
        bar.update(len(batch))
    bar.close()
    return results


def _explain(predictor: Predictor, pixels: np.ndarray, probabilities: np.ndarray,
             good: Sequence[PosterResult], originals: Sequence[np.ndarray | None],
             results: list[PosterResult], folder: Path) -> None:
    """Write each poster's captioned Grad-CAM overlay for its top genre."""
    import cv2

    from postergenre.serving.gradcam import captioned_overlay, gradcam

    top = probabilities.argmax(axis=1)
    heat = gradcam(predictor.model, pixels, top)
    for result, rgb, h, g in zip(good, originals, heat, top, strict=True):
        assert rgb is not None and result.probabilities is not None  # kept for --explain
        caption = f"{GENRES[g]} {result.probabilities[g]:.2f}"
        path = folder / _explain_name(results.index(result), result.poster)
        image = captioned_overlay(rgb, h, caption)
        with atomic_open(path, "wb") as handle:
            ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            if not ok:
                raise ValueError(f"{path}: cannot encode the Grad-CAM overlay")
            handle.write(data.tobytes())
        result.explanation = str(path)
