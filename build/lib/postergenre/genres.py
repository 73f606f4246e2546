"""The 19-genre vocabulary: one source of truth for names, order and label vectors.

The order below is the order of every label vector, model output and metrics table
in the project (the order of the design notes). Never reorder it: saved models and
TFRecord shards depend on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

GENRES: tuple[str, ...] = (
    "Action",
    "Adventure",
    "Animation",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Family",
    "Fantasy",
    "History",
    "Horror",
    "Music",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
NUM_GENRES = len(GENRES)
GENRE_INDEX: dict[str, int] = {name: i for i, name in enumerate(GENRES)}

# How genres are joined in a labels table cell (the layout of ../shared/data/*/labels.csv).
SEPARATOR = "|"


class UnknownGenreError(ValueError):
    """A genre name that is not in the 19-genre vocabulary."""


def parse_genres(cell: str | float | None) -> list[str]:
    """Split a `|`-joined labels-table cell into genre names (empty cell -> [])."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    return [part.strip() for part in str(cell).split(SEPARATOR) if part.strip()]


def join_genres(genres: Iterable[str]) -> str:
    """Join genre names into a labels-table cell, in vocabulary order."""
    return SEPARATOR.join(sorted(set(genres), key=GENRE_INDEX.__getitem__))


def unknown_genres(genres: Iterable[str]) -> list[str]:
    """The names in `genres` that are not in the vocabulary."""
    return [g for g in genres if g not in GENRE_INDEX]


def encode(genres: Iterable[str]) -> np.ndarray:
    """Genre names -> a 19-long uint8 multi-hot vector in vocabulary order."""
    vector = np.zeros(NUM_GENRES, dtype=np.uint8)
    for name in genres:
        try:
            vector[GENRE_INDEX[name]] = 1
        except KeyError:
            raise UnknownGenreError(
                f"unknown genre {name!r}; the vocabulary is: {', '.join(GENRES)}"
            ) from None
    return vector


def decode(vector: Sequence[float] | np.ndarray, threshold: float = 0.5) -> list[str]:
    """A 19-long label or score vector -> the genre names at or above `threshold`."""
    values = np.asarray(vector, dtype=float).reshape(-1)
    if values.shape[0] != NUM_GENRES:
        raise ValueError(f"expected a vector of {NUM_GENRES} values, got {values.shape[0]}")
    return [GENRES[i] for i in np.flatnonzero(values >= threshold)]


def encode_many(cells: Iterable[str]) -> np.ndarray:
    """Labels-table cells -> an (n, 19) uint8 multi-hot matrix."""
    rows = [encode(parse_genres(cell)) for cell in cells]
    if not rows:
        return np.zeros((0, NUM_GENRES), dtype=np.uint8)
    return np.stack(rows)
