"""The one table that maps each label source's genre names into the 19-genre vocabulary.

Three sources name genres differently: TMDb (what `--source tmdb` fetches), MovieLens
(`movies.csv`) and IMDb (the names most poster dumps use, and the vocabulary's origin).
Every name a source is known to use appears below, mapped to a vocabulary genre or to
`None` (dropped, with the reason in `DROPPED_WHY`). docs/genre-mapping.md shows the same
table for readers; a test keeps the two in step.

A name that is in none of these tables is *unknown*: it is dropped too, but counted
apart in the ingest report, so a genre TMDb adds one day is seen rather than lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from postergenre.genres import GENRE_INDEX, join_genres

LABEL_SOURCES: tuple[str, ...] = ("tmdb", "movielens", "union")

# TMDb's movie genres (GET /genre/movie/list), by id: the id is stable across the
# `language` the API answers in, the name is not.
TMDB_GENRE_IDS: dict[int, str] = {
    28: "Action", 12: "Adventure", 16: "Animation", 35: "Comedy", 80: "Crime",
    99: "Documentary", 18: "Drama", 10751: "Family", 14: "Fantasy", 36: "History",
    27: "Horror", 10402: "Music", 9648: "Mystery", 10749: "Romance",
    878: "Science Fiction", 10770: "TV Movie", 53: "Thriller", 10752: "War", 37: "Western",
}

TMDB: dict[str, str | None] = {
    "Action": "Action", "Adventure": "Adventure", "Animation": "Animation",
    "Comedy": "Comedy", "Crime": "Crime", "Documentary": "Documentary", "Drama": "Drama",
    "Family": "Family", "Fantasy": "Fantasy", "History": "History", "Horror": "Horror",
    "Music": "Music", "Mystery": "Mystery", "Romance": "Romance",
    "Science Fiction": "Sci-Fi", "Thriller": "Thriller", "War": "War", "Western": "Western",
    "TV Movie": None,
}

MOVIELENS: dict[str, str | None] = {
    "Action": "Action", "Adventure": "Adventure", "Animation": "Animation",
    "Children": "Family", "Children's": "Family", "Comedy": "Comedy", "Crime": "Crime",
    "Documentary": "Documentary", "Drama": "Drama", "Fantasy": "Fantasy",
    "Horror": "Horror", "Musical": "Musical", "Mystery": "Mystery", "Romance": "Romance",
    "Sci-Fi": "Sci-Fi", "Thriller": "Thriller", "War": "War", "Western": "Western",
    "Film-Noir": None, "IMAX": None, "(no genres listed)": None,
}

IMDB: dict[str, str | None] = {
    **{name: name for name in GENRE_INDEX},
    "Adult": None, "Biography": None, "Film-Noir": None, "Game-Show": None, "News": None,
    "Reality-TV": None, "Short": None, "Sport": None, "Talk-Show": None,
}

TABLES: dict[str, dict[str, str | None]] = {"tmdb": TMDB, "movielens": MOVIELENS, "imdb": IMDB}

# Why each dropped name is dropped (shown in docs/genre-mapping.md).
DROPPED_WHY: dict[str, str] = {
    "TV Movie": "a release format, not a genre",
    "Film-Noir": "a style; its posters are mostly Crime/Drama, which the movie also has",
    "IMAX": "a release format, not a genre",
    "(no genres listed)": "MovieLens' placeholder for no genre",
    "Adult": "not in the vocabulary",
    "Biography": "not in the vocabulary (such movies usually also have Drama/History)",
    "Game-Show": "television only",
    "News": "television only",
    "Reality-TV": "television only",
    "Short": "a length, not a genre",
    "Sport": "not in the vocabulary",
    "Talk-Show": "television only",
}


@dataclass
class Mapped:
    """The result of mapping one movie's source genre names."""

    genres: list[str] = field(default_factory=list)  # vocabulary names, vocabulary order
    dropped: list[str] = field(default_factory=list)  # known names mapped to nothing
    unknown: list[str] = field(default_factory=list)  # names in no table


def map_genres(source: str, names: Iterable[str]) -> Mapped:
    """Map one movie's genre names from `source` ('tmdb', 'movielens' or 'imdb')."""
    try:
        table = TABLES[source]
    except KeyError:
        raise ValueError(f"unknown genre source {source!r}; choose one of "
                         f"{', '.join(TABLES)}") from None
    out = Mapped()
    kept: set[str] = set()
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name not in table:
            out.unknown.append(name)
        elif table[name] is None:
            out.dropped.append(name)
        else:
            kept.add(table[name])  # type: ignore[arg-type]
    out.genres = join_genres(kept).split("|") if kept else []
    return out


def tmdb_genre_names(details_genres: Iterable[dict]) -> list[str]:
    """TMDb's `genres` field ([{id, name}]) -> English names, by id where the id is known."""
    names = []
    for entry in details_genres:
        known = TMDB_GENRE_IDS.get(entry["id"]) if isinstance(entry.get("id"), int) else None
        name = known or entry.get("name") or ""
        if name:
            names.append(name)
    return names


def combine(label_source: str, tmdb: list[str], movielens: list[str]) -> list[str]:
    """The label for one movie from its mapped TMDb and MovieLens genres."""
    if label_source == "tmdb":
        chosen = tmdb
    elif label_source == "movielens":
        chosen = movielens
    elif label_source == "union":
        chosen = [*tmdb, *movielens]
    else:
        raise ValueError(f"unknown label_source {label_source!r}; choose one of "
                         f"{', '.join(LABEL_SOURCES)}")
    return join_genres(chosen).split("|") if chosen else []


def _check_tables() -> None:
    """Every target must be a vocabulary genre; every dropped name must say why."""
    for source, table in TABLES.items():
        for name, target in table.items():
            if target is not None and target not in GENRE_INDEX:
                raise AssertionError(f"{source} genre {name!r} maps to {target!r}, "
                                     "which is not in the vocabulary")
            if target is None and name not in DROPPED_WHY:
                raise AssertionError(f"{source} genre {name!r} is dropped without a reason")


_check_tables()
