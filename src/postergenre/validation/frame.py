"""The one pandas frame the `validate` suite runs on: a labels table, measured.

One row per labels.csv record: the table's cells, plus what the rules need derived from
them (genre count, unknown genres, one count column per genre) and from each poster file
(`probe.py`: size, header dimensions, decodability, channels, a perceptual hash and its
near-duplicate group). Values that could not be measured stay null, so only the rule that
explains a problem fires for a row (great-expectations skips nulls in column rules).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from postergenre.data.labels import GROUP_COLUMN, LABEL_COLUMNS, PHASH_COLUMN
from postergenre.data.phash import hamming, near_duplicate_groups
from postergenre.data.probe import PosterProbe
from postergenre.genres import GENRES, SEPARATOR, encode_many, parse_genres, unknown_genres

# The frame's row key: the labels.csv line a row starts on. gx reports offenders by this
# column (`unexpected_index_column_names`), which stays unique even when imdb_id is empty
# or duplicated.
LINE_COLUMN = "line"


def record_lines(path: Path, rows: int) -> list[int]:
    """The line each data record starts on (header = line 1), as an editor shows it.

    Not simply index + 2: a quoted title may span lines, and pandas skips blank lines. If the
    csv module and pandas disagree on the record count, fall back to index + 2.
    """
    fallback = list(range(2, rows + 2))
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            starts: list[int] = []
            previous_end = 0
            for record in reader:
                if record:  # blank lines come back as [] and are skipped by pandas too
                    starts.append(previous_end + 1)
                previous_end = reader.line_num
    except (OSError, UnicodeDecodeError, csv.Error):
        return fallback
    starts = starts[1:]  # the header
    return starts if len(starts) == rows else fallback


def _nullable(values: Iterable[Any], dtype: str = "object") -> pd.Series:
    """A column where None stays None: gx's column rules skip nulls (not measured)."""
    return pd.Series(list(values), dtype=dtype)


def validation_frame(
    labels: pd.DataFrame, probes: Sequence[PosterProbe], lines: Sequence[int],
    duplicate_distance: int,
) -> pd.DataFrame:
    """The columns the suite checks: the raw cells plus what the rules derive from them.

    `probes` and `lines` are per row of `labels`; posters within `duplicate_distance` hash
    bits of each other share a `duplicate_group` (-1: no grouping).
    """
    genres = [parse_genres(cell) for cell in labels["genres"]]
    known = [[g for g in row if not unknown_genres([g])] for row in genres]
    counts = encode_many(SEPARATOR.join(row) for row in known).astype("int64")
    hashes = [int(p.phash, 16) if p.phash else None for p in probes]
    groups = near_duplicate_groups(hashes, duplicate_distance)
    imdb_ids = [cell.strip() or None for cell in labels["imdb_id"]]
    duplicate_of, detail = [], []
    for i, group in enumerate(groups):
        if group == i:
            duplicate_of.append("")
            detail.append("")
        else:
            first = imdb_ids[group] or f"line {lines[group]}"
            duplicate_of.append(first)
            a, b = hashes[i], hashes[group]
            assert a is not None and b is not None  # grouped only when both were hashed
            detail.append(f"line {lines[group]}, Hamming distance {hamming(a, b)} bits")
    frame = pd.DataFrame({
        LINE_COLUMN: pd.Series(lines, dtype="int64"),
        **{c: labels[c].to_numpy(dtype=object) for c in labels.columns if c in LABEL_COLUMNS},
    })
    frame["imdb_id"] = _nullable(imdb_ids)
    return frame.assign(
        genre_count=pd.Series([len(g) for g in genres], dtype="int64"),
        unknown_genres=_nullable(SEPARATOR.join(unknown_genres(g)) for g in genres),
        poster_exists=pd.Series([p.exists for p in probes], dtype=bool),
        file_size=_nullable((p.file_size for p in probes), "Int64"),
        pixels=_nullable((p.pixels for p in probes), "Int64"),
        width=_nullable((p.width for p in probes), "Int64"),
        height=_nullable((p.height for p in probes), "Int64"),
        aspect=_nullable((p.height / p.width if p.width and p.height is not None else None
                          for p in probes), "float64"),
        decodes=_nullable(p.decodes for p in probes),
        channels=_nullable((p.channels for p in probes), "Int64"),
        problem=_nullable(p.problem for p in probes),
        **{PHASH_COLUMN: _nullable(p.phash or "" for p in probes),
           GROUP_COLUMN: _nullable(imdb_ids[g] or f"line-{lines[g]}" for g in groups)},
        duplicate_of=_nullable(duplicate_of),
        duplicate_detail=_nullable(detail),
        **{f"genre_{g}": counts[:, i] for i, g in enumerate(GENRES)},
    )
