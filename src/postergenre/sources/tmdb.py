"""The tmdb source: MovieLens ids -> TMDb details and posters -> a poster data set.

For each MovieLens movie (links.csv joined with movies.csv): its TMDb details (title,
release date, imdb_id, genres, poster_path), then its poster from the image CDN. The
label is the TMDb genres, the MovieLens genres or their union (`label_source`), mapped
by genre_mapping.py. A movie with no TMDb id, no TMDb entry, no poster, no IMDb id or no
genre left after mapping is excluded, and the report says which and why. Beside this
module: the TMDb client (tmdb_api.py), the polite HTTP under it (crawler.py) and the
MovieLens download (movielens.py).

Resumable and idempotent, because a crawl of tens of thousands of movies will be
interrupted:
- every file is written atomically (temp file + rename), so a poster on disk is whole;
  temp files a killed run left behind are deleted on the next start;
- TMDb details (or their 404) are cached per TMDb id, and each movie's poster outcome
  (fetched / not found) per poster size, in the cache folder, each right after it is
  known: a rerun makes no request for a movie already settled;
- failures (retries exhausted, an undecodable image, an answer that is not JSON or not
  TMDb's shape, an imdb_id that is not `tt` + 7 or 8 digits) are not cached: a rerun
  tries them again, and only them. One movie's failure never stops the crawl: it is
  recorded with its reason (and detail) in the report's `excluded` list; only a refused
  credential, which every request would meet, stops it;
- an imdb_id becomes a file name (`posters/<imdb_id>.jpg`) only once it is checked:
  an answer's `../../x` must never write outside the output folder;
- `labels.csv` is written last, from the cache alone, in MovieLens order, so an
  interrupted-then-resumed crawl writes the same bytes as an uninterrupted one.
So, unlike the other sources, it does not build a whole new folder beside the output
(outdir.building): a resumed crawl must find the posters the interrupted one left. New
posters are written into `<out>/.posters.incoming/` and moved into `posters/` only when
the run ends well.

Nothing lost (issue 24): a movie whose request fails this run (retries exhausted, an
unusable answer) keeps its row and poster from the previous `labels.csv`, if it had one;
only an answer that settles it (TMDb has no such movie, or no poster, any more) removes
it. A run in which more than `MAX_FAILED_FRACTION` of the movies failed (TMDb down, a
proxy answering for it) fails with one error, after writing its report, and changes
nothing in the output: `labels.csv` and `posters/` stay as they were, the posters it did
fetch wait in the incoming folder for the rerun.

Nothing let in: every answer is read through the crawler's byte cap (crawler.Fetcher), and
a poster is kept only once images.py's one guard allows it (a poster format, a readable
header within the pixel bound) and it decodes.

Politeness: TMDb asks clients to stay under about 40 requests per second (its "upper
limit" since the 2019 change); the default `rate_limit` (TmdbSourceConfig) is half that,
leaving room for other clients on the same address.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd

from postergenre.atomic import atomic_open, write_json
from postergenre.configs import TmdbSourceConfig
from postergenre.data.images import PosterDecodeError, TooManyPixelsError, decode_rgb
from postergenre.data.labels import (
    LABEL_COLUMNS,
    LABELS_FILE,
    POSTERS_DIR,
    read_labels,
    write_table,
)
from postergenre.progress import Progress
from postergenre.sources import genre_mapping, movielens
from postergenre.sources.crawler import Fetcher, FetchFailedError, RetryPolicy
from postergenre.sources.outdir import INCOMING_DIR, check_dataset_dir, remove_partial_files
from postergenre.sources.tmdb_api import (
    DEFAULT_API_URL,
    DEFAULT_IMAGE_URL,
    TmdbAnswerError,
    TmdbAuth,
    TmdbAuthError,
    TmdbClient,
    TmdbError,
)

log = logging.getLogger(__name__)

_DETAIL_KEYS = ("id", "imdb_id", "title", "release_date", "genres", "poster_path")
_POSTER_EXTS = (".jpg", ".jpeg", ".png", ".webp")
# What an IMDb title id looks like (7 digits until 2017, 8 since): it becomes a file name.
IMDB_ID = re.compile(r"tt[0-9]{7,8}")  # fullmatch; [0-9]: \d takes any Unicode digit
# TMDb's poster paths: "/kqjL17yufvn9OVLyXYpvtyrFfak.jpg" (it becomes part of a CDN URL).
_POSTER_PATH = re.compile(r"^/[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
# A run in which more movies than this share failed changes nothing (see the module doc).
MAX_FAILED_FRACTION = 0.5


class TmdbCrawlError(TmdbError):
    """Too many movies failed: the output folder was left as it was."""


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/postergenre (or ~/.cache/postergenre): downloads and crawl state."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "postergenre"


@dataclass
class Outcome:
    movie: movielens.MovieLensMovie
    status: str  # fetched | skipped (poster from an earlier run) | missing | failed
    reason: str = ""
    row: dict | None = None
    from_cache: bool = False  # settled by an earlier run: no request this run
    detail: str = ""  # for a failure: what exactly was wrong (the report shows it)


def details_problem(found: Any) -> str | None:
    """Why a TMDb details answer does not have the shape ingest relies on, or None.

    Checked before it is cached or used, so a malformed answer fails its movie (and is
    asked again on the next run) instead of raising deep inside the genre mapping.
    """
    if not isinstance(found, dict):
        return f"the answer is a JSON {type(found).__name__}, not an object"
    for key in ("imdb_id", "title", "release_date", "poster_path"):
        if found.get(key) is not None and not isinstance(found[key], str):
            return f"{key} is {found[key]!r}, not a string"
    genres = found.get("genres")
    if genres is not None and not (isinstance(genres, list) and all(
            isinstance(g, dict) and isinstance(g.get("name"), str) for g in genres)):
        return f"genres is {str(genres)[:80]}, not a list of {{id, name}} objects"
    poster_path = found.get("poster_path")
    if poster_path and not _POSTER_PATH.match(poster_path):
        return f"poster_path {poster_path[:80]!r} is not a TMDb image path"
    return None


def poster_problem(body: bytes, content_type: str) -> str | None:
    """Why these bytes are not a usable poster, or None when images.py's guard lets them
    through and OpenCV decodes them."""
    if not body:
        return "empty_body"
    if "html" in content_type.lower() or body.lstrip()[:1] == b"<":
        return "html_body"
    try:
        decode_rgb(body)
    except TooManyPixelsError:
        return "too_many_pixels"
    except PosterDecodeError:
        return "undecodable_image"
    return None


class _Crawl:
    """One crawl's state: the client, the cache folders and the output folder."""

    def __init__(self, client: TmdbClient, out: Path, cache: Path, label_source: str) -> None:
        self.client = client
        self.out = out
        self.incoming = out / INCOMING_DIR  # this run's new posters, until it ends well
        self.details_dir = cache / "tmdb" / "details"
        # Poster outcomes depend on the output folder and the size: keyed by both.
        key = hashlib.sha1(str(out).encode()).hexdigest()[:12]
        self.state_dir = cache / "tmdb" / "posters" / key / client.poster_size
        self.label_source = label_source
        self.unknown_genres: Counter = Counter()

    # -- cache ------------------------------------------------------------------------
    def _read(self, path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None  # absent, or (cannot happen with atomic writes) unreadable

    def _details_path(self, tmdb_id: str) -> Path:
        return self.details_dir / f"{tmdb_id}.json"

    async def details(self, tmdb_id: str) -> tuple[dict | None, bool]:
        """(details or None for a 404, came from the cache); TmdbAnswerError for an answer
        of the wrong shape, which is not cached."""
        path = self._details_path(tmdb_id)
        cached = self._read(path)
        if cached is not None and details_problem(cached.get("details") or {}) is None:
            return cached.get("details"), True
        found = await self.client.details(tmdb_id)
        if found is not None:
            problem = details_problem(found)
            if problem:
                raise TmdbAnswerError("details_bad_shape", f"TMDb movie {tmdb_id}: {problem}")
        kept = None if found is None else {k: found.get(k) for k in _DETAIL_KEYS}
        write_json(path, {"tmdb_id": tmdb_id, "details": kept})
        return kept, False

    # -- one movie --------------------------------------------------------------------
    def _label(self, movie: movielens.MovieLensMovie, details: dict) -> tuple[list[str], str]:
        tmdb_names = genre_mapping.tmdb_genre_names(details.get("genres") or [])
        tmdb = genre_mapping.map_genres("tmdb", tmdb_names)
        ml = genre_mapping.map_genres("movielens", movie.genres)
        self.unknown_genres.update(f"tmdb:{n}" for n in tmdb.unknown)
        self.unknown_genres.update(f"movielens:{n}" for n in ml.unknown)
        genres = genre_mapping.combine(self.label_source, tmdb.genres, ml.genres)
        source = {"tmdb": tmdb_names, "movielens": list(movie.genres),
                  "union": list(dict.fromkeys([*tmdb_names, *movie.genres]))}
        return genres, "|".join(source[self.label_source])

    async def one(self, movie: movielens.MovieLensMovie) -> Outcome:
        if not movie.tmdb_id:
            return Outcome(movie, "missing", "no_tmdb_id")
        details, cached = await self.details(movie.tmdb_id)
        if details is None:
            return Outcome(movie, "missing", "tmdb_not_found", from_cache=cached)
        imdb_id = movie.imdb_id or (details.get("imdb_id") or "")
        if not imdb_id:
            return Outcome(movie, "missing", "no_imdb_id", from_cache=cached)
        if not IMDB_ID.fullmatch(imdb_id):
            # It would become a file name: `../../x` must not write outside the folder.
            where = "links.csv" if movie.imdb_id else f"TMDb movie {movie.tmdb_id}"
            if not movie.imdb_id:  # TMDb may fix its answer: ask again on the next run
                self._details_path(movie.tmdb_id).unlink(missing_ok=True)
            return Outcome(movie, "failed", "bad_imdb_id",
                           detail=f"{where}: imdb_id {imdb_id[:40]!r} is not tt + 7 or 8 "
                           "digits")
        genres, source_genres = self._label(movie, details)
        if not genres:
            return Outcome(movie, "missing", "no_genre", from_cache=cached)
        poster_path = details.get("poster_path") or ""
        if not poster_path:
            return Outcome(movie, "missing", "no_poster_path", from_cache=cached)
        ext = os.path.splitext(poster_path)[1].lower()
        rel = f"{POSTERS_DIR}/{imdb_id}{ext if ext in _POSTER_EXTS else '.jpg'}"
        row = {"imdb_id": imdb_id, "tmdb_id": movie.tmdb_id,
               "movielens_id": movie.movielens_id,
               "title": movie.title or _tmdb_title(details), "poster": rel,
               "genres": "|".join(genres), "source_genres": source_genres}
        state_path = self.state_dir / f"{movie.tmdb_id}.json"
        state = self._read(state_path)
        if state and state.get("poster_path") == poster_path:
            if state.get("outcome") == "not_found":
                return Outcome(movie, "missing", "poster_not_found", from_cache=cached)
            if state.get("outcome") == "fetched" and _poster_file(self.out, rel) is not None:
                return Outcome(movie, "skipped", row=row, from_cache=cached)
        resp = await self.client.poster(poster_path)
        if resp.status == 404:
            write_json(state_path, {"poster_path": poster_path, "outcome": "not_found"})
            return Outcome(movie, "missing", "poster_not_found")
        if resp.status != 200:
            return Outcome(movie, "failed", f"poster_http_{resp.status}")
        problem = await asyncio.to_thread(_check_and_write, resp.body, resp.content_type,
                                          self.incoming / Path(rel).name)
        if problem:
            return Outcome(movie, "failed", problem)
        write_json(state_path, {"poster_path": poster_path, "outcome": "fetched"})
        return Outcome(movie, "fetched", row=row)


def _poster_file(out: Path, rel: str) -> Path | None:
    """Where a row's poster is: fetched this run (the incoming folder), or before."""
    for path in (out / INCOMING_DIR / Path(rel).name, out / rel):
        if path.is_file():
            return path
    return None


def _tmdb_title(details: dict) -> str:
    year = (details.get("release_date") or "")[:4]
    title = details.get("title") or ""
    return f"{title} ({year})" if year else title


def _check_and_write(body: bytes, content_type: str, dest: Path) -> str | None:
    """Decode-check a poster, then write it atomically; the problem if it is no image."""
    problem = poster_problem(body, content_type)
    if problem is None:
        with atomic_open(dest, "wb") as handle:
            handle.write(body)
    return problem


async def _crawl(crawl: _Crawl, movies: list[movielens.MovieLensMovie], concurrency: int,
                 secrets: tuple[str, ...]) -> list[Outcome]:
    results: list[Outcome | None] = [None] * len(movies)
    counts: Counter = Counter()
    queue = iter(enumerate(movies))
    bar = Progress("ingest tmdb", len(movies), "movie")

    async def worker() -> None:
        for i, movie in queue:  # a shared iterator: each movie goes to one worker
            try:
                outcome = await crawl.one(movie)
            except FetchFailedError as err:
                outcome = Outcome(movie, "failed", _redact(err.reason, secrets))
            except TmdbAuthError:
                raise  # every request would meet it: stop the crawl
            except TmdbAnswerError as err:
                outcome = Outcome(movie, "failed", err.reason,
                                  detail=_redact(err.detail, secrets))
            except Exception as err:  # noqa: BLE001 - one movie must not end a long crawl
                # A case this module does not know yet: recorded (and retried on the next
                # run) like any failure, with the traceback in the debug log.
                log.debug("movie %s failed", movie.movielens_id, exc_info=True)
                outcome = Outcome(movie, "failed", f"error_{type(err).__name__}",
                                  detail=_redact(str(err)[:200], secrets))
            results[i] = outcome
            counts[outcome.status] += 1
            bar.update(1, {status: str(n) for status, n in counts.items()})

    try:
        # One worker per allowed in-flight request: a movie's two requests are sequential.
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        bar.close()
    return [r for r in results if r is not None]


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _previous_rows(out: Path) -> dict[str, dict]:
    """The rows of the output's current labels.csv whose poster is there, by MovieLens id:
    what a movie that fails this run keeps."""
    path = out / LABELS_FILE
    if not path.is_file():
        return {}
    table = read_labels(path, require_rows=False)
    rows = {}
    for row in table.to_dict("records"):
        if row.get("movielens_id") and (out / row["poster"]).is_file():
            rows[row["movielens_id"]] = {c: row.get(c, "") for c in LABEL_COLUMNS}
    return rows


def _assemble(outcomes: list[Outcome], previous: dict[str, dict]
              ) -> tuple[list[dict], list[dict]]:
    """Rows to keep (first of each imdb_id, MovieLens order) and exclusions with reasons.
    A failed movie keeps its `previous` row (and is still reported as failed)."""
    rows, excluded, seen = [], [], set()
    for o in outcomes:
        m = o.movie
        row = o.row
        if row is None and o.status == "failed":
            row = previous.get(m.movielens_id)  # a failure settles nothing: kept
        if row is not None and row["imdb_id"] in seen:
            if o.row is not None:
                o.status, o.reason, o.row = "missing", "duplicate_imdb_id", None
            row = None
        if o.row is None:
            excluded.append({"movielens_id": m.movielens_id, "tmdb_id": m.tmdb_id,
                             "imdb_id": m.imdb_id, "title": m.title,
                             "outcome": "failed" if o.status == "failed" else "missing",
                             "reason": o.reason, **({"detail": o.detail} if o.detail else {}),
                             **({"kept_previous_row": True} if row is not None else {})})
        if row is not None:
            seen.add(row["imdb_id"])
            rows.append(row)
    return rows, excluded


def _commit(out: Path, rows: list[dict]) -> int:
    """Move this run's posters into posters/, write labels.csv, then delete the posters it
    no longer names and the incoming folder; the posters removed."""
    incoming = out / INCOMING_DIR
    posters = out / POSTERS_DIR
    for row in rows:
        fetched = incoming / Path(row["poster"]).name
        if fetched.is_file():
            os.replace(fetched, out / row["poster"])
    write_table(pd.DataFrame(rows, columns=list(LABEL_COLUMNS)), out / LABELS_FILE)
    keep = {row["poster"] for row in rows}
    removed = 0
    for path in posters.iterdir():
        if path.is_file() and f"{POSTERS_DIR}/{path.name}" not in keep:
            path.unlink()
            removed += 1
    shutil.rmtree(incoming, ignore_errors=True)
    return removed


def ingest_tmdb(out_dir: str | os.PathLike[str], config: TmdbSourceConfig, *,
                report_path: str | os.PathLike[str] | None = None,
                auth: TmdbAuth | None = None) -> dict:
    """Crawl TMDb for the movies of a MovieLens release; write labels.csv + posters/.

    Credentials come from `auth`, else from the environment (TmdbAuth.from_env): they are
    never a setting. The JSON report (the summary plus every excluded movie and why) goes
    to `report_path`, else into the cache folder. Returns the summary, without the
    per-movie exclusion list. Raises TmdbCrawlError, the output left as it was, when more
    than MAX_FAILED_FRACTION of the movies failed (see the module doc).
    """
    if config.label_source not in genre_mapping.LABEL_SOURCES:
        raise ValueError(f"unknown label_source {config.label_source!r}; choose one of "
                         f"{', '.join(genre_mapping.LABEL_SOURCES)}")
    if config.max_movies < 0:
        raise ValueError(f"max_movies must be 0 (all) or more, got {config.max_movies}")
    auth = auth or TmdbAuth.from_env()
    out = Path(out_dir).resolve()
    check_dataset_dir(out)
    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    started = time.monotonic()

    # The zip can be large: never give it less time than a minute.
    zip_path = movielens.fetch_release(
        config.movielens_release, cache / "movielens",
        config.movielens_url or movielens.DEFAULT_BASE_URL, config.movielens_md5 or None,
        timeout=max(config.timeout, 60.0))
    movies = movielens.read_movies(zip_path)
    if config.max_movies:
        movies = movies[:config.max_movies]
    (out / POSTERS_DIR).mkdir(parents=True, exist_ok=True)
    previous = _previous_rows(out)
    leftovers = sum(remove_partial_files(folder)
                    for folder in (out / POSTERS_DIR, out / INCOMING_DIR, out))
    if leftovers:
        log.info("removed %d partial file(s) an interrupted run left in %s", leftovers, out)

    async def run() -> tuple[list[Outcome], dict, Counter]:
        connector = aiohttp.TCPConnector(limit=config.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            fetcher = Fetcher(session, rate=config.rate_limit, concurrency=config.concurrency,
                              timeout=config.timeout,
                              retry=RetryPolicy(attempts=config.retries + 1))
            client = TmdbClient(fetcher, auth, config.api_url or DEFAULT_API_URL,
                                config.image_url or DEFAULT_IMAGE_URL, config.poster_size)
            crawl = _Crawl(client, out, cache, config.label_source)
            outcomes = await _crawl(crawl, movies, config.concurrency, auth.secrets)
            return outcomes, fetcher.stats.as_dict(), crawl.unknown_genres

    outcomes, http, unknown = asyncio.run(run())
    rows, excluded = _assemble(outcomes, previous)
    failed = sum(o.status == "failed" for o in outcomes)
    refused = failed > MAX_FAILED_FRACTION * len(movies)
    pruned = 0 if refused else _commit(out, rows)

    statuses = Counter(o.status for o in outcomes)
    by_reason = {kind: dict(sorted(Counter(e["reason"] for e in excluded
                                           if e["outcome"] == kind).items()))
                 for kind in ("missing", "failed")}
    summary = {
        "source": "tmdb", "out_dir": str(out), "movielens_release": config.movielens_release,
        "label_source": config.label_source, "poster_size": config.poster_size,
        "movies": len(movies), "n_posters": len(rows),
        # skipped: settled by an earlier run, no request this run (included or not).
        "fetched": statuses["fetched"], "skipped": sum(o.from_cache for o in outcomes),
        "missing": sum(by_reason["missing"].values()),
        "failed": sum(by_reason["failed"].values()),
        "missing_by_reason": by_reason["missing"], "failed_by_reason": by_reason["failed"],
        "unknown_genres": dict(sorted(unknown.items())),
        "kept_previous": sum(bool(e.get("kept_previous_row")) for e in excluded),
        "http": http, "partial_files_removed": leftovers, "stale_posters_removed": pruned,
        "rate_limit": config.rate_limit, "concurrency": config.concurrency,
        "seconds": round(time.monotonic() - started, 2),
    }
    report = Path(report_path) if report_path else (
        cache / "reports" / f"ingest-{hashlib.sha1(str(out).encode()).hexdigest()[:12]}.json")
    summary["report"] = str(report)
    write_json(report, {**summary, "excluded": excluded})
    if refused:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(
            by_reason["failed"].items(), key=lambda item: -item[1])[:3])
        raise TmdbCrawlError(
            f"{failed} of {len(movies)} movies failed ({reasons}), more than "
            f"{MAX_FAILED_FRACTION:.0%}: {out} is left as it was (report: {report}); rerun "
            "once TMDb answers again: what this run fetched is not asked for again")
    log.info("tmdb ingest: %d posters in %s (%d fetched, %d skipped, %d missing, %d failed)",
             len(rows), out, summary["fetched"], summary["skipped"], summary["missing"],
             summary["failed"])
    return summary
