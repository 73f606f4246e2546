"""The `augment` stage: resize every split into shards, and grow the training split only.

Validation and test posters are written once, untouched. Training posters are written
again, transformed, as often as their rarest genre asks: a genre's upsampling factor is
inversely proportional to its frequency in the training split (the median genre gets 1),
capped at `max_upsample`, instead of the study's one constant list of "minority" genres.
Each copy records the training movie it came from in `origin`, so augmentation can never
leak across splits. The per-genre positive weights for the weighted loss are computed from
the training split as augmented and written as their own file (`class_weights.json`) and
into the manifest.

The output folder is built beside the old one (`<out>.partial`) and swapped into place
whole (atomic.atomic_folder, as training does): a kill of the parent or of a worker, a
full disk or an undecodable poster at any moment leaves the previous output as it was,
and the next run starts the partial folder afresh.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from postergenre.atomic import atomic_folder, write_json
from postergenre.configs import AugmentConfig
from postergenre.data.labels import read_labels
from postergenre.data.render import (
    PosterJob,
    RenderPool,
    RenderSettings,
    RenderWorkerError,
    genre_flags,
)
from postergenre.data.shards import MANIFEST_FILE, write_shards
from postergenre.data.split import SPLITS
from postergenre.genres import GENRES, encode_many
from postergenre.progress import Progress

CLASS_WEIGHTS_FILE = "class_weights.json"
_CHUNK = 256  # posters rendered at once: bounds memory whatever the split size
# Posters per pool task: sending a task and its results costs about a millisecond, a few
# posters' work; 64 keep that to a few per cent. Near the end tasks shrink (to _MIN_TASK)
# so the workers finish together instead of one rendering a last 64 while the rest idle.
_TASK, _MIN_TASK = 64, 4


def positive_class_weights(labels: np.ndarray, max_weight: float) -> list[float]:
    """Per-genre weight of positive examples: negatives / positives, clipped to [1, max].

    Multi-label training needs one weight per label (Keras' `class_weight` is for
    single-label problems); a genre with no positive example gets weight 1.
    """
    labels = np.asarray(labels, dtype=np.float64)
    positives = labels.sum(axis=0)
    negatives = labels.shape[0] - positives
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    return [round(float(w), 6) for w in np.clip(ratio, 1.0, max_weight)]


def genre_factors(labels: np.ndarray, max_upsample: float) -> np.ndarray:
    """Per-genre upsampling factor: median genre count / genre count, clipped to [1, cap].

    Genres without a training example get 1 (nothing to copy).
    """
    counts = np.asarray(labels, dtype=np.float64).sum(axis=0)
    present = counts[counts > 0]
    if present.size == 0:
        return np.ones(labels.shape[1])
    with np.errstate(divide="ignore"):
        factors = np.where(counts > 0, np.median(present) / np.maximum(counts, 1), 1.0)
    return np.clip(factors, 1.0, max_upsample)


def copies_per_movie(labels: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Extra copies per movie: its rarest genre's factor, rounded, minus the original."""
    labels = np.asarray(labels, dtype=bool)
    strongest = np.where(labels, factors[None, :], 1.0).max(axis=1, initial=1.0)
    return np.rint(strongest).astype(int) - 1


def augment_and_shard(
    data_dir: str | os.PathLike[str],
    split_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: AugmentConfig | None = None,
) -> dict[str, Any]:
    """Write `<split>-NNNNN.tfrecord` shards, `class_weights.json` and `manifest.json`
    into a new `out_dir` that replaces the old one only when whole (see the module doc).

    `config.transforms` picks among hflip, crop, jitter; `config.max_upsample` caps how
    many times a training poster appears in all (1 switches upsampling off). Deterministic
    from `config.seed`.
    """
    config = config or AugmentConfig()
    transforms, max_upsample, image_size = (config.transforms, config.max_upsample,
                                            config.image_size)
    max_class_weight, shard_size, seed = config.max_class_weight, config.shard_size, config.seed
    settings = RenderSettings(image_size, tuple(transforms), config.crop_min_scale,
                              config.jitter, seed, config.jpeg_quality)
    data_dir, split_dir = Path(data_dir), Path(split_dir)

    # Plain strings, not Path objects: the jobs are made once per poster before the
    # workers get their first task.
    folder = os.fspath(data_dir)
    # The workers start (from the fork server) while the tables are read; on an error
    # they are waited for before the partial folder is removed.
    with atomic_folder(out_dir) as out, RenderPool() as pool:
        tables = {split: read_labels(split_dir / f"{split}.csv") for split in SPLITS}
        matrices = {split: encode_many(tables[split]["genres"]) for split in SPLITS}
        factors = genre_factors(matrices["train"], max_upsample)
        manifest: dict[str, Any] = {
            "image_size": image_size,
            "jpeg_quality": config.jpeg_quality,
            "genres": list(GENRES),
            "transforms": list(transforms),
            "max_upsample": max_upsample,
            "upsample_factors": dict(zip(GENRES, (round(float(f), 4) for f in factors),
                                         strict=True)),
            "seed": seed,
            "shards": {},
            "counts": {},
            "genre_counts": {},
        }
        for split in SPLITS:
            table, matrix = tables[split], matrices[split]
            extra = (copies_per_movie(matrix, factors) if split == "train"
                     else np.zeros(len(table), dtype=int))
            counts = {"movies": len(table), "augmented": int(extra.sum())}
            jobs = [PosterJob(os.path.join(folder, poster), imdb_id, split, flags, copies)
                    for poster, imdb_id, flags, copies
                    in zip(table["poster"].tolist(), table["imdb_id"].tolist(),
                           genre_flags(matrix), extra.tolist(), strict=True)]
            records = _rendered(pool, jobs, split, settings)
            manifest["shards"][split] = write_shards(records, out, split, shard_size)
            _count(manifest, split, counts, matrix, extra, out, max_class_weight)
        write_json(out / MANIFEST_FILE, manifest)
    return manifest


def _tasks(count: int, workers: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each pool task over `count` posters: _TASK posters, or a share of
    what is left small enough to spread over every worker twice, at least _MIN_TASK."""
    start = 0
    while start < count:
        size = max(_MIN_TASK, min(_TASK, -(-(count - start) // (2 * workers))))
        yield start, min(count, start + size)
        start += size


def _rendered(pool: RenderPool, jobs: list[PosterJob], split: str, settings: RenderSettings
              ) -> Iterator[bytes]:
    """The split's records (framed) in table order, rendered by the worker processes
    while this process writes the shards. At most _CHUNK posters wait in memory, and the
    pool gets the next task as each finished one is taken (no idle gap between chunks)."""
    bar = Progress(f"augment {split}", len(jobs), "poster")
    tasks = list(_tasks(len(jobs), pool.workers))
    with bar:
        pending: deque[tuple[Future[list[list[bytes]]], tuple[int, int]]] = deque()
        for number, task in enumerate(tasks, 1):
            held = task  # the posters a broken pool is reported with
            try:
                pending.append((pool.submit(jobs[slice(*task)], settings), task))
                while len(pending) > _CHUNK // _TASK or (pending and number == len(tasks)):
                    future, held = pending[0]
                    results = future.result()
                    pending.popleft()
                    for records in results:
                        yield from records
                        bar.update()
            except BrokenProcessPool:
                start, end = held
                raise RenderWorkerError(
                    f"augment {split}: a worker process ended abruptly (killed, perhaps for "
                    f"lack of memory) while rendering {jobs[start].path} or one of the "
                    f"{end - start - 1} poster(s) after it; the output folder is left as it "
                    "was") from None


def _count(manifest: dict[str, Any], split: str, counts: dict[str, int], matrix: np.ndarray,
           extra: np.ndarray, out: Path, max_class_weight: float) -> None:
    """The split's counts into the manifest; for the training split also the per-genre
    positive weights (as augmented), into the manifest and class_weights.json."""
    counts["records"] = counts["movies"] + counts["augmented"]
    manifest["counts"][split] = counts
    weighted = matrix.astype(np.int64) * (1 + extra)[:, None]
    manifest["genre_counts"][split] = dict(zip(GENRES, map(int, weighted.sum(axis=0)),
                                               strict=True))
    if split == "train":
        expanded = np.repeat(matrix, 1 + extra, axis=0)
        weights = positive_class_weights(expanded, max_class_weight)
        manifest["class_weights"] = weights
        write_json(out / CLASS_WEIGHTS_FILE, {"genres": list(GENRES),
                                              "class_weights": weights,
                                              "max_class_weight": max_class_weight})
        manifest["class_weights_file"] = CLASS_WEIGHTS_FILE
