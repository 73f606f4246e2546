"""The `augment` stage: resize every split into shards, and grow the training split only.

Validation and test posters are written once, untouched. Training posters are written
again, transformed, as often as their rarest genre asks: a genre's upsampling factor is
inversely proportional to its frequency in the training split (the median genre gets 1),
capped at `max_upsample`, instead of the study's one constant list of "minority" genres.
Each copy records the training movie it came from in `origin`, so augmentation can never
leak across splits. The per-genre positive weights for the weighted loss are computed from
the training split as augmented and written as their own file (`class_weights.json`) and
into the manifest.
"""

from __future__ import annotations

import math
import os
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from postergenre.atomic import write_json
from postergenre.configs import TRANSFORMS, AugmentConfig
from postergenre.genres import GENRES, encode_many
from postergenre.images import (
    colour_jitter,
    decode_threads,
    encode_jpeg,
    hflip,
    random_crop,
    read_rgb,
    resize,
)
from postergenre.labels import read_labels
from postergenre.shards import MANIFEST_FILE, PosterRecord, write_shards
from postergenre.split import SPLITS

CLASS_WEIGHTS_FILE = "class_weights.json"
_CHUNK = 256  # posters decoded at once: bounds memory whatever the split size
_TASK = 8  # posters per pool task: a future per poster costs as much as a small decode


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


def _transform(image: np.ndarray, transforms: Sequence[str], rng: np.random.Generator,
               crop_min_scale: float, jitter: float, size: int) -> tuple[np.ndarray, str]:
    """One augmented copy: each chosen transform with probability 1/2, at least one."""
    chosen = [t for t in transforms if rng.random() < 0.5] or [transforms[0]]
    if "crop" in chosen:
        image = random_crop(image, rng, crop_min_scale)
    image = resize(image, size)
    if "hflip" in chosen:
        image = hflip(image)
    if "jitter" in chosen:
        image = colour_jitter(image, rng, jitter)
    return image, "+".join(t for t in TRANSFORMS if t in chosen)


def augment_and_shard(
    data_dir: str | os.PathLike[str],
    split_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: AugmentConfig | None = None,
) -> dict[str, Any]:
    """Write `<split>-NNNNN.tfrecord` shards, `class_weights.json` and `manifest.json`.

    `config.transforms` picks among hflip, crop, jitter; `config.max_upsample` caps how
    many times a training poster appears in all (1 switches upsampling off). Deterministic
    from `config.seed`.
    """
    config = config or AugmentConfig()
    transforms, max_upsample, image_size = (config.transforms, config.max_upsample,
                                            config.image_size)
    crop_min_scale, jitter, seed = config.crop_min_scale, config.jitter, config.seed
    jpeg_quality, max_class_weight = config.jpeg_quality, config.max_class_weight
    shard_size = config.shard_size
    data_dir, split_dir, out = Path(data_dir), Path(split_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.tfrecord"):
        stale.unlink()

    tables = {split: read_labels(split_dir / f"{split}.csv") for split in SPLITS}
    train_labels = encode_many(tables["train"]["genres"])
    factors = genre_factors(train_labels, max_upsample)
    manifest: dict[str, Any] = {
        "image_size": image_size,
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

    # The smallest crop of an augmented copy must still be `image_size` on each side, so a
    # poster with copies may decode at reduced scale only down to image_size / crop scale.
    crop_side = (math.ceil(image_size / crop_min_scale) if "crop" in transforms
                 else image_size)

    def render(row: Any, labels: np.ndarray, copies: int, split: str) -> list[PosterRecord]:
        """The original and its copies of one poster (runs in a worker thread)."""
        source = read_rgb(data_dir / row.poster, min_side=crop_side if copies else image_size)
        records = [PosterRecord(encode_jpeg(resize(source, image_size), jpeg_quality), labels,
                                row.imdb_id, split, origin=row.imdb_id)]
        for k in range(copies):
            # One generator per (seed, movie, copy): the same copy whatever the thread order.
            rng = np.random.default_rng([seed, zlib.crc32(row.imdb_id.encode()), k])
            image, name = _transform(source, transforms, rng, crop_min_scale, jitter,
                                     image_size)
            records.append(PosterRecord(encode_jpeg(image, jpeg_quality), labels, row.imdb_id,
                                        split, origin=row.imdb_id, augmentation=name))
        return records

    for split in SPLITS:
        table: pd.DataFrame = tables[split]
        extra = (copies_per_movie(train_labels, factors) if split == "train"
                 else np.zeros(len(table), dtype=int))
        matrix = encode_many(table["genres"])
        counts = {"movies": len(table), "augmented": int(extra.sum())}

        def records(table=table, extra=extra, split=split, matrix=matrix
                    ) -> Iterator[PosterRecord]:
            rows = list(table.itertuples(index=False))
            bar = tqdm(total=len(rows), desc=f"augment {split}", unit="poster", disable=None)

            def task(first: int) -> list[list[PosterRecord]]:
                last = min(first + _TASK, len(rows))
                return [render(rows[i], matrix[i], int(extra[i]), split)
                        for i in range(first, last)]

            # OpenCV releases the GIL: threads decode and encode in parallel. Results are
            # taken in order; at most _CHUNK posters wait in memory, and the pool gets the
            # next task as each finished one is taken (no idle gap between chunks).
            with ThreadPoolExecutor(max_workers=decode_threads()) as pool, bar:
                pending: deque[Future[list[list[PosterRecord]]]] = deque()
                for first in range(0, len(rows), _TASK):
                    pending.append(pool.submit(task, first))
                    while len(pending) > _CHUNK // _TASK or (
                            pending and first + _TASK >= len(rows)):
                        for batch in pending.popleft().result():
                            yield from batch
                            bar.update()

        manifest["shards"][split] = write_shards(records(), out, split, shard_size)
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
    write_json(out / MANIFEST_FILE, manifest)
    return manifest
