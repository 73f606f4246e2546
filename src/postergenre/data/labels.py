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


REQUIRED_COLUMNS: tuple[str, ...] = ("imdb_id", "poster", "genres")


def _where_not_utf8(path: Path) -> str:
    """'line N, byte 0xE9' for the first byte that is not UTF-8 (pandas' offset is into
    an internal chunk, not the file)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        return f"line {line}, byte 0x{data[err.start]:02X}"
    return "the text"


def read_csv_text(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV with every column as text; errors name the file and say what is wrong.

    pandas' own messages name neither the file nor the fix ("No columns to parse from
    file", "'utf-8' codec can't decode byte 0xe9 in position 41"), and a stage reading
    several tables would leave the user guessing which one.
    """
    path = Path(path)
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        size = path.stat().st_size
        raise ValueError(f"{path}: empty file ({size} bytes): a labels table needs at least "
                         "a header line") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: {_where_not_utf8(path)} is not UTF-8; save the table as "
                         "UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None
    except pd.errors.ParserError as err:
        raise ValueError(f"{path}: not a readable CSV table ({err})") from None


def read_labels(path: str | os.PathLike[str], *,
                require_rows: bool | None = None) -> pd.DataFrame:
    """Read a labels table with every column as text (ids keep their leading zeros).

    Errors name the file: not found, empty, not UTF-8, not CSV, a required column missing,
    and, with `require_rows`, no data row. By default (None) rows are required of a data
    set's `labels.csv` (a folder, or a file of that name: what ingest, validate and split
    take in; an empty data set is a broken export or crawl), not of other tables in the
    same form (a split's `validation.csv` may be empty).
    """
    path = Path(path)
    if path.is_dir():
        path = path / LABELS_FILE
    if require_rows is None:
        require_rows = path.name == LABELS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"labels table not found: {path}")
    frame = read_csv_text(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    if require_rows and frame.empty:
        raise ValueError(f"{path}: no data rows (only a header): an empty data set")
    return frame


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a CSV atomically (temp file + rename), so a kill never leaves half a table."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        frame.to_csv(handle, index=False, lineterminator="\n")
    return Path(path)
