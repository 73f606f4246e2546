"""The `augment` stage: resize every split into shards, and grow the training split only.

Validation and test posters are written once, untouched. Training posters of minority
genres (the study's list by default) are written a second time, mirrored, with the movie
they came from recorded in `origin`, so augmentation can never leak across splits. The
per-genre positive weights for the weighted loss are computed here, from the training
split as augmented, and written into the manifest for the training stages.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from postergenre.atomic import write_json
from postergenre.genres import GENRES, encode, parse_genres, unknown_genres
from postergenre.images import encode_jpeg, hflip, read_rgb, resize
from postergenre.labels import read_labels
from postergenre.shards import MANIFEST_FILE, PosterRecord, write_shards
from postergenre.split import SPLITS

# The genres the 2017 study added again flipped (its minority classes).
STUDY_MINORITY_GENRES: tuple[str, ...] = (
    "Animation",
    "History",
    "Music",
    "Musical",
    "Sci-Fi",
    "War",
    "Western",
)


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


def augment_and_shard(
    data_dir: str | os.PathLike[str],
    split_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    minority_genres: Sequence[str] = STUDY_MINORITY_GENRES,
    image_size: int = 64,
    shard_size: int = 1000,
    jpeg_quality: int = 95,
    max_class_weight: float = 10.0,
) -> dict:
    """Write `<split>-NNNNN.tfrecord` shards and `manifest.json` into `out_dir`."""
    bad = unknown_genres(minority_genres)
    if bad:
        raise ValueError(f"minority_genres: unknown genre(s) {', '.join(map(repr, bad))}")
    if image_size < 32:
        raise ValueError("image_size must be at least 32 (VGG16's smallest input)")
    minority = set(minority_genres)
    data_dir, split_dir, out = Path(data_dir), Path(split_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.tfrecord"):
        stale.unlink()

    manifest: dict = {
        "image_size": image_size,
        "genres": list(GENRES),
        "minority_genres": list(minority_genres),
        "shards": {},
        "counts": {},
        "genre_counts": {},
    }
    for split in SPLITS:
        table = read_labels(split_dir / f"{split}.csv")
        augment = split == "train"
        label_rows: list[np.ndarray] = []
        counts = {"movies": len(table), "augmented": 0}

        def records(table=table, split=split, augment=augment, counts=counts,
                    label_rows=label_rows) -> Iterator[PosterRecord]:
            for row in tqdm(table.itertuples(index=False), total=len(table),
                            desc=f"augment {split}", unit="poster", disable=None):
                genres = parse_genres(row.genres)
                labels = encode(genres)
                image = resize(read_rgb(data_dir / row.poster), image_size)
                label_rows.append(labels)
                yield PosterRecord(encode_jpeg(image, jpeg_quality), labels, row.imdb_id,
                                   split, origin=row.imdb_id)
                if augment and minority.intersection(genres):
                    counts["augmented"] += 1
                    label_rows.append(labels)
                    yield PosterRecord(encode_jpeg(hflip(image), jpeg_quality), labels,
                                       row.imdb_id, split, origin=row.imdb_id,
                                       augmentation="hflip")

        manifest["shards"][split] = write_shards(records(), out, split, shard_size)
        counts["records"] = counts["movies"] + counts["augmented"]
        manifest["counts"][split] = counts
        matrix = np.stack(label_rows) if label_rows else np.zeros((0, len(GENRES)), np.uint8)
        manifest["genre_counts"][split] = dict(zip(GENRES, map(int, matrix.sum(axis=0)),
                                                   strict=True))
        if split == "train":
            manifest["class_weights"] = positive_class_weights(matrix, max_class_weight)
    write_json(out / MANIFEST_FILE, manifest)
    return manifest
