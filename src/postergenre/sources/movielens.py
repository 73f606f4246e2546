"""MovieLens: download a release zip once, verify its published checksum, read its ids.

GroupLens publishes each release as `<base>/<name>.zip` with its MD5 beside it in
`<base>/<name>.zip.md5`. The zip is cached (with the checksum it was verified against),
so a rerun, or a crawl resumed after a crash, reads the cache and needs no network.
`links.csv` (movieId, imdbId, tmdbId) and `movies.csv` (movieId, title, genres) are
joined on movieId.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from postergenre.atomic import atomic_open
from postergenre.progress import Progress

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://files.grouplens.org/datasets/movielens"
VARIANTS: tuple[str, ...] = ("ml-latest-small", "ml-latest", "ml-25m")
_MD5 = re.compile(r"\b([0-9a-fA-F]{32})\b")


class ChecksumError(ValueError):
    """A downloaded file whose MD5 is not the published one."""


@dataclass(frozen=True)
class MovieLensMovie:
    """One row of links.csv joined with movies.csv."""

    movielens_id: str
    imdb_id: str  # "tt" + at least 7 digits; "" where links.csv has none
    tmdb_id: str  # "" where links.csv has none
    title: str
    genres: tuple[str, ...]  # as movies.csv writes them


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _get(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only
        return response.read()


def _download(url: str, dest: Path, timeout: float) -> None:
    """Stream `url` into `dest` atomically, with a progress bar."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
        total = int(response.headers.get("Content-Length") or 0) or None
        with atomic_open(dest, "wb") as out, \
                Progress(f"download {dest.name}", total, "B") as bar:
            for block in iter(lambda: response.read(1 << 16), b""):
                out.write(block)
                bar.update(len(block))


def fetch_release(variant: str, cache_dir: str | os.PathLike[str],
                  base_url: str = DEFAULT_BASE_URL, expected_md5: str | None = None,
                  timeout: float = 60.0) -> Path:
    """The verified zip of a MovieLens release, from the cache or downloaded into it.

    The expected MD5 is `expected_md5` when given, else the one GroupLens publishes
    (fetched once and cached beside the zip). A cached zip that does not match is
    downloaded again; a download that does not match raises ChecksumError.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown MovieLens release {variant!r}; choose one of "
                         f"{', '.join(VARIANTS)}")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    zip_path, md5_path = cache / f"{variant}.zip", cache / f"{variant}.zip.md5"
    url = f"{base_url.rstrip('/')}/{variant}.zip"
    if expected_md5 is None:
        if not md5_path.is_file():
            text = _get(url + ".md5", timeout).decode("utf-8", "replace")
            found = _MD5.search(text)
            if not found:
                raise ChecksumError(f"{url}.md5: no MD5 checksum in {text[:80]!r}")
            with atomic_open(md5_path, "w") as handle:
                handle.write(found.group(1).lower() + "\n")
        expected_md5 = md5_path.read_text().strip()
    expected_md5 = expected_md5.lower()
    if zip_path.is_file() and _md5(zip_path) == expected_md5:
        log.info("MovieLens %s: cached %s (md5 verified)", variant, zip_path)
        return zip_path
    _download(url, zip_path, timeout)
    got = _md5(zip_path)
    if got != expected_md5:
        zip_path.unlink(missing_ok=True)
        md5_path.unlink(missing_ok=True)  # fetch the published checksum again next time
        raise ChecksumError(f"{url}: MD5 {got} is not the published {expected_md5}")
    return zip_path


def _member(archive: zipfile.ZipFile, name: str, zip_path: Path) -> pd.DataFrame:
    matches = [m for m in archive.namelist() if m == name or m.endswith("/" + name)]
    if not matches:
        raise ValueError(f"{zip_path}: no {name} in the archive")
    with archive.open(matches[0]) as handle:
        return pd.read_csv(io.BytesIO(handle.read()), dtype=str, keep_default_na=False)


def _need(frame: pd.DataFrame, columns: tuple[str, ...], where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)}")


def _imdb(raw: str) -> str:
    raw = raw.strip()
    return f"tt{int(raw):07d}" if raw.isdigit() else ""


def _tmdb(raw: str) -> str:
    raw = raw.strip()
    if raw.endswith(".0"):  # some releases write ids as floats
        raw = raw[:-2]
    return raw if raw.isdigit() else ""


def read_movies(zip_path: str | os.PathLike[str]) -> list[MovieLensMovie]:
    """links.csv joined with movies.csv, in movieId order."""
    zip_path = Path(zip_path)
    with zipfile.ZipFile(zip_path) as archive:
        links = _member(archive, "links.csv", zip_path)
        movies = _member(archive, "movies.csv", zip_path)
    _need(links, ("movieId", "imdbId", "tmdbId"), f"{zip_path}:links.csv")
    _need(movies, ("movieId", "title", "genres"), f"{zip_path}:movies.csv")
    info = {row.movieId: row for row in movies.itertuples(index=False)}
    out = []
    for row in links.itertuples(index=False):
        movie = info.get(row.movieId)
        out.append(MovieLensMovie(
            movielens_id=row.movieId,
            imdb_id=_imdb(row.imdbId),
            tmdb_id=_tmdb(row.tmdbId),
            title=movie.title if movie is not None else "",
            genres=tuple(g for g in (movie.genres.split("|") if movie is not None else [])
                         if g),
        ))
    out.sort(key=lambda m: int(m.movielens_id) if m.movielens_id.isdigit() else 0)
    return out
