"""The `split` stage: train / validation / test by movie, before any augmentation.

Splitting by movie first, and augmenting only the training split afterwards, is what
keeps a flipped copy of a test poster out of training (the original study's leakage).
The split is a seeded permutation of the movies sorted by id, so it does not depend on
the row order of the labels table.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from postergenre.atomic import write_json
from postergenre.labels import read_labels, write_table

SPLITS: tuple[str, ...] = ("train", "validation", "test")
MANIFEST_FILE = "manifest.json"


def split_dataset(
    labels_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    train_fraction: float = 0.6,
    validation_fraction: float = 0.2,
    seed: int = 42,
) -> dict:
    """Write `train.csv`, `validation.csv`, `test.csv` and `manifest.json` into `out_dir`.

    Every movie lands in exactly one split; the test fraction is what is left.
    """
    if not (0 < train_fraction < 1 and 0 < validation_fraction < 1):
        raise ValueError("train_fraction and validation_fraction must be in (0, 1)")
    if train_fraction + validation_fraction >= 1:
        raise ValueError("train_fraction + validation_fraction must leave room for a test split")
    labels = read_labels(labels_path)
    duplicated = labels["imdb_id"][labels["imdb_id"].duplicated()].unique()
    if len(duplicated):
        raise ValueError(
            f"{labels_path}: duplicate imdb_id {', '.join(map(str, duplicated[:10]))}: "
            "run validate first"
        )
    if len(labels) < 3:
        raise ValueError(f"{labels_path}: {len(labels)} movies; need at least 3 to split")

    ordered = labels.sort_values("imdb_id", kind="stable").reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(ordered))
    n_train = max(1, int(round(train_fraction * len(ordered))))
    n_validation = max(1, int(round(validation_fraction * len(ordered))))
    n_validation = min(n_validation, len(ordered) - n_train - 1)
    bounds = {
        "train": order[:n_train],
        "validation": order[n_train : n_train + n_validation],
        "test": order[n_train + n_validation :],
    }

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"seed": seed, "fractions": {}, "counts": {}, "sha256": {}}
    for name, rows in bounds.items():
        part = ordered.iloc[np.sort(rows)]
        path = write_table(part, out / f"{name}.csv")
        manifest["counts"][name] = len(part)
        manifest["fractions"][name] = round(len(part) / len(ordered), 4)
        manifest["sha256"][name] = hashlib.sha256(path.read_bytes()).hexdigest()
    write_json(out / MANIFEST_FILE, manifest)
    return manifest
