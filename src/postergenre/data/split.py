"""The `split` stage: train / validation / test by movie, before any augmentation.

Splitting by movie first, and augmenting only the training split afterwards, is what keeps
a flipped copy of a test poster out of training (the original study's leakage). Two more
guards here:

- near-duplicate posters (`validate`'s perceptual-hash groups, column `duplicate_group`)
  are split as one unit, so the same artwork never sits on both sides;
- the split is iterative multi-label stratification (Sechidis et al. 2011, the
  `iterative-stratification` package) over those units, so every genre, rare ones too,
  keeps about its overall share in every split.

The result depends only on the set of movies and the seed: units are ordered by id before
the seeded shuffle, so the row order of the labels table does not matter.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import IterativeStratification

from postergenre.atomic import write_json
from postergenre.configs import SplitConfig
from postergenre.data.labels import GROUP_COLUMN, read_labels, write_table
from postergenre.genres import GENRES, encode_many

log = logging.getLogger(__name__)
SPLITS: tuple[str, ...] = ("train", "validation", "test")
MANIFEST_FILE = "manifest.json"
SPLIT_COLUMN = "split"


def assign_splits(
    labels: np.ndarray, groups: np.ndarray, fractions: tuple[float, float, float], seed: int
) -> np.ndarray:
    """Split index (0, 1, 2) per row: rows of a group together, genres stratified.

    `labels` is the (n, 19) multi-hot matrix, `groups` a key per row. A group's label
    vector is the union of its members' (a group is nearly always one movie).
    """
    keys, inverse = np.unique(groups, return_inverse=True)  # sorted: row order is irrelevant
    unit_labels = np.zeros((len(keys), labels.shape[1]), dtype=bool)
    np.logical_or.at(unit_labels, inverse, labels.astype(bool))
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(keys))
    folds = IterativeStratification(labels=unit_labels[order], r=np.asarray(fractions),
                                    random_state=rng)
    unit_split = np.empty(len(keys), dtype=int)
    unit_split[order] = folds
    return unit_split[inverse]


def _content_hash(frame: pd.DataFrame) -> str:
    """sha256 of the sorted `imdb_id,split` pairs: the split's identity, whatever the CSV bytes."""
    lines = sorted(f"{i},{s}" for i, s in zip(frame["imdb_id"], frame[SPLIT_COLUMN], strict=True))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def read_assignment(path: str | os.PathLike[str], ids: pd.Series,
                    groups: pd.Series) -> np.ndarray:
    """A given split (`imdb_id,split` CSV) as split indices for `ids`, checked.

    Every movie must be assigned, each to train, validation or test, and no split may be
    empty; ids the CSV has but the labels do not (rows validate rejected) are ignored.
    Near-duplicate groups split across splits are allowed, with a warning naming them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split assignment not found: {path}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: not a CSV file ({err})") from None
    if list(table.columns[:2]) != ["imdb_id", SPLIT_COLUMN]:
        raise ValueError(f"{path}: expected the columns imdb_id,split; got "
                         f"{','.join(table.columns)}")
    bad = table[~table[SPLIT_COLUMN].isin(SPLITS)]
    if len(bad):
        line = int(bad.index[0]) + 2
        raise ValueError(f"{path} line {line}: split {bad.iloc[0][SPLIT_COLUMN]!r} for "
                         f"{bad.iloc[0]['imdb_id']}; expected one of {', '.join(SPLITS)}")
    twice = table["imdb_id"][table["imdb_id"].duplicated()]
    if len(twice):
        raise ValueError(f"{path}: {twice.iloc[0]} is assigned twice")
    given = dict(zip(table["imdb_id"], table[SPLIT_COLUMN], strict=True))
    missing = [i for i in ids if i not in given]
    if missing:
        raise ValueError(f"{path}: {len(missing)} movie(s) of the labels have no split, e.g. "
                         f"{', '.join(missing[:10])}")
    assigned = np.array([SPLITS.index(given[i]) for i in ids])
    empty = [SPLITS[k] for k in range(len(SPLITS)) if not (assigned == k).any()]
    if empty:
        raise ValueError(f"{path}: no movie in {', '.join(empty)}")
    split_groups = pd.DataFrame({"id": list(ids), "group": list(groups), "split": assigned})
    mixed = split_groups.groupby("group")["split"].nunique()
    for group in mixed[mixed > 1].index:
        members = split_groups[split_groups["group"] == group]
        log.warning("%s: near-duplicate posters in different splits: %s", path,
                    ", ".join(f"{r.id} ({SPLITS[r.split]})" for r in members.itertuples()))
    return assigned


def split_dataset(
    labels_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: SplitConfig | None = None,
) -> dict[str, Any]:
    """Write `train.csv`, `validation.csv`, `test.csv` and `manifest.json` into `out_dir`.

    Every movie lands in exactly one split; the test fraction is what is left. The manifest
    holds counts, per-genre counts, each file's sha256 and `content_hash` (the assignment).
    `config.assignment`: an `imdb_id,split` CSV to use as given instead (a fixed benchmark
    split), checked by `read_assignment`.
    """
    config = config or SplitConfig()
    assignment_path = config.assignment or None
    train_fraction, validation_fraction, seed = (config.train_fraction,
                                                 config.validation_fraction, config.seed)
    labels = read_labels(labels_path)
    duplicated = labels["imdb_id"][labels["imdb_id"].duplicated()].unique()
    if len(duplicated):
        raise ValueError(f"{labels_path}: duplicate imdb_id {', '.join(map(str, duplicated[:10]))}"
                         ": run validate first")
    if GROUP_COLUMN not in labels.columns:
        raise ValueError(f"{labels_path}: no {GROUP_COLUMN!r} column (near-duplicate groups): "
                         "split reads the labels.csv that validate writes")
    if len(labels) < 3:
        raise ValueError(f"{labels_path}: {len(labels)} movies; need at least 3 to split")

    ordered = labels.sort_values("imdb_id", kind="stable").reset_index(drop=True)
    matrix = encode_many(ordered["genres"])
    fractions = (train_fraction, validation_fraction, 1 - train_fraction - validation_fraction)
    groups = ordered[GROUP_COLUMN].where(ordered[GROUP_COLUMN] != "", ordered["imdb_id"])
    if assignment_path is not None:
        assignment = read_assignment(assignment_path, ordered["imdb_id"], groups)
    else:
        assignment = assign_splits(matrix, groups.to_numpy(dtype=str), fractions, seed)
    ordered[SPLIT_COLUMN] = [SPLITS[i] for i in assignment]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "seed": seed,
        "method": (f"given: {assignment_path}" if assignment_path is not None
                   else "iterative-stratification by near-duplicate group"),
        "fractions": {}, "counts": {}, "genre_counts": {}, "sha256": {},
        "content_hash": _content_hash(ordered),
    }
    manifest["genre_counts"]["all"] = dict(zip(GENRES, map(int, matrix.sum(axis=0)), strict=True))
    for index, name in enumerate(SPLITS):
        mask = assignment == index
        part = ordered[mask].drop(columns=[SPLIT_COLUMN])
        path = write_table(part, out / f"{name}.csv")
        manifest["counts"][name] = int(mask.sum())
        manifest["fractions"][name] = round(float(mask.mean()), 4)
        manifest["genre_counts"][name] = dict(
            zip(GENRES, map(int, matrix[mask].sum(axis=0)), strict=True))
        manifest["sha256"][name] = hashlib.sha256(path.read_bytes()).hexdigest()
    write_json(out / MANIFEST_FILE, manifest)
    return manifest
