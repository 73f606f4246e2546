"""The on-disk layout of a poster data set, shared by every ingest source.

A data set is a folder holding `labels.csv` and the poster files it names:

    data/
      labels.csv          imdb_id, tmdb_id, movielens_id, title, poster, genres, source_genres
      posters/tt0000001.jpg

`poster` is relative to the folder, `genres` is `|`-joined in the 19-genre vocabulary and
`source_genres` keeps what the label source wrote. It is the layout of
../shared/data/*/labels.csv, so a poster dump in that form can be used as is.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from postergenre.atomic import atomic_open

LABELS_FILE = "labels.csv"
POSTERS_DIR = "posters"
LABEL_COLUMNS: tuple[str, ...] = (
    "imdb_id",
    "tmdb_id",
    "movielens_id",
    "title",
    "poster",
    "genres",
    "source_genres",
)
# What `validate` writes for the stages after it: the kept rows gain the poster's perceptual
# hash and its near-duplicate group (`split` keeps a group in one split); rejected rows go to
# their own table with the rule that rejected them.
PHASH_COLUMN = "phash"
GROUP_COLUMN = "duplicate_group"
REJECTS_FILE = "rejects.csv"
REASON_COLUMN = "reason"


def read_labels(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a labels table with every column as text (ids keep their leading zeros)."""
    path = Path(path)
    if path.is_dir():
        path = path / LABELS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"labels table not found: {path}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("imdb_id", "poster", "genres") if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a CSV atomically (temp file + rename), so a kill never leaves half a table."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        frame.to_csv(handle, index=False, lineterminator="\n")
    return Path(path)
