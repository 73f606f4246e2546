"""A MovieLens-like and TMDb-like HTTP server on loopback, with scripted misbehaviour.

One aiohttp app serves:
- `/movielens/<release>.zip` and `.zip.md5`: a generated MovieLens release (links.csv,
  movies.csv), in the layout and checksum format GroupLens publishes;
- `/3/movie/<tmdb_id>`: TMDb-like details (needs the v3 key as `api_key` or the v4
  token as a bearer header, else 401);
- `/t/p/<size>/<file>`: generated JPEG posters (no auth, as TMDb's CDN).

Each movie has a `behaviour` that scripts what goes wrong for it: `details_404`,
`no_poster_path`, `poster_404`, `truncated` (half a JPEG), `html` (an HTML page with
status 200), `429_once` (one 429 with Retry-After), `500_once`, `500_always`,
`slow_once`, `slow_always` (longer than the client's timeout), `not_json` (details
answered 200 with an HTML page), `genres_strings` (details whose `genres` is a list of
names, not of {id, name}). Hostile posters (issue 24): `pixel_bomb` (a PNG of 8000 x 8000
pixels in 64 KB, which decodes), `oversized` (a poster padded to 25 MB, sent in chunks
without a length), `gzip_bomb` (the same, gzip-compressed to a few tens of KB, sent with
`Content-Encoding: gzip`), `redirect_loop` (a redirect to `/loop/1`, which redirects to
`/loop/2`, and so on forever). `down = True` answers every TMDb request (API and
images) with 503. A movie's `tmdb_imdb_id` replaces the imdb_id its details answer
(`../../x`, say), and `imdb=None` leaves links.csv's imdbId empty. Every request's
arrival time and path (never its query) is logged, for rate checks (`GET /_stats`).
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import hashlib
import io
import struct
import threading
import time
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np
from aiohttp import web

BEHAVIOURS = ("ok", "details_404", "no_poster_path", "poster_404", "truncated", "html",
              "429_once", "500_once", "500_always", "slow_once", "slow_always", "not_json",
              "genres_strings", "pixel_bomb", "oversized", "gzip_bomb", "redirect_loop")
PADDED_SIZE = 25_000_000  # an `oversized` poster: over the crawler's 20 MB cap
_ML_GENRES = ["Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Drama",
              "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance",
              "Sci-Fi", "Thriller", "War", "Western", "Documentary"]
_TMDB_GENRES = [(28, "Action"), (12, "Adventure"), (16, "Animation"), (35, "Comedy"),
                (80, "Crime"), (99, "Documentary"), (18, "Drama"), (10751, "Family"),
                (14, "Fantasy"), (36, "History"), (27, "Horror"), (10402, "Music"),
                (9648, "Mystery"), (10749, "Romance"), (878, "Science Fiction"),
                (10770, "TV Movie"), (53, "Thriller"), (10752, "War"), (37, "Western")]


@dataclass
class FakeMovie:
    movielens_id: int
    imdb: int | None  # links.csv's imdbId (no "tt"); None: empty in links.csv
    tmdb_id: int | None
    title: str
    ml_genres: list[str]
    tmdb_genres: list[tuple[int, str]]
    behaviour: str = "ok"
    tmdb_imdb_id: str | None = None  # what the details answer says, when not imdb_id

    @property
    def imdb_id(self) -> str:
        return "" if self.imdb is None else f"tt{self.imdb:07d}"

    @property
    def poster_path(self) -> str | None:
        return None if self.behaviour == "no_poster_path" else f"/p{self.tmdb_id}.jpg"


def make_catalogue(n: int, seed: int = 0, behaviours: dict[int, str] | None = None
                   ) -> list[FakeMovie]:
    """`n` movies with random genres; `behaviours` maps a movie index to a behaviour."""
    rng = np.random.default_rng(seed)
    movies = []
    for i in range(n):
        ml = sorted({_ML_GENRES[j] for j in rng.choice(len(_ML_GENRES), rng.integers(1, 4),
                                                        replace=False)})
        tm = sorted({_TMDB_GENRES[j] for j in rng.choice(len(_TMDB_GENRES),
                                                         rng.integers(1, 4), replace=False)})
        movies.append(FakeMovie(movielens_id=i + 1, imdb=1_000_000 + i, tmdb_id=5000 + i,
                                title=f"Fake movie {i + 1} ({1980 + i % 40})",
                                ml_genres=ml, tmdb_genres=tm,
                                behaviour=(behaviours or {}).get(i, "ok")))
    return movies


def poster_jpeg(tmdb_id: int, width: int = 40, height: int = 60) -> bytes:
    """A small deterministic JPEG for a movie."""
    rng = np.random.default_rng(tmdb_id)
    image = rng.integers(0, 256, size=(height // 4, width // 4, 3), dtype=np.uint8)
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


@functools.cache
def pixel_bomb_png(side: int = 8000) -> bytes:
    """A whole, decodable grey PNG of side x side pixels (64 Mpx: over validate's 40 Mpx
    bound; 192 MB once decoded to colour) in about 64 KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    pixels = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0, then black pixels
    data = b"".join(pixels.compress(row) for _ in range(side)) + pixels.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))


@functools.cache
def padded_poster(tmdb_id: int) -> bytes:
    """A real JPEG poster followed by zeros up to PADDED_SIZE (decoders stop at its end)."""
    body = poster_jpeg(tmdb_id)
    return body + bytes(PADDED_SIZE - len(body))


def movielens_zip(movies: list[FakeMovie], release: str = "ml-latest-small") -> bytes:
    """A release zip with links.csv and movies.csv (fixed timestamps: same bytes always)."""
    links = ["movieId,imdbId,tmdbId"] + [
        f"{m.movielens_id},{'' if m.imdb is None else f'{m.imdb:07d}'},"
        f"{'' if m.tmdb_id is None else m.tmdb_id}"
        for m in movies]
    rows = ["movieId,title,genres"]
    for m in movies:
        title = f'"{m.title}"' if "," in m.title else m.title
        rows.append(f"{m.movielens_id},{title},{'|'.join(m.ml_genres) or '(no genres listed)'}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, lines in (("links.csv", links), ("movies.csv", rows)):
            info = zipfile.ZipInfo(f"{release}/{name}", date_time=(2018, 9, 26, 0, 0, 0))
            archive.writestr(info, "\n".join(lines) + "\n")
    return buffer.getvalue()


@dataclass
class FakeServices:
    movies: list[FakeMovie]
    api_key: str = ""
    read_token: str = ""
    latency: float = 0.0  # added to every request
    slow_seconds: float = 3.0  # how long a slow response takes
    release: str = "ml-latest-small"
    down: bool = False  # every TMDb request answered 503
    hits: Counter = field(default_factory=Counter)
    log: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.by_tmdb = {m.tmdb_id: m for m in self.movies if m.tmdb_id is not None}
        self.zip_bytes = movielens_zip(self.movies, self.release)

    def _authorised(self, request: web.Request) -> bool:
        if self.api_key and request.query.get("api_key") == self.api_key:
            return True
        return bool(self.read_token) and (
            request.headers.get("Authorization") == f"Bearer {self.read_token}")

    async def _movielens(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == f"{self.release}.zip":
            return web.Response(body=self.zip_bytes, content_type="application/zip")
        if name == f"{self.release}.zip.md5":
            digest = hashlib.md5(self.zip_bytes).hexdigest()
            return web.Response(text=f"MD5 ({self.release}.zip) = {digest}\n")
        raise web.HTTPNotFound()

    async def _scripted(self, movie: FakeMovie, key: str) -> web.Response | None:
        """The misbehaviour for this request, or None to answer normally."""
        self.hits[key] += 1
        first = self.hits[key] == 1
        b = movie.behaviour
        if b == "429_once" and first:
            return web.Response(status=429, headers={"Retry-After": "1"},
                                text='{"status_code": 25}')
        if b == "500_always" or (b == "500_once" and first):
            return web.Response(status=500, text="internal error")
        if b == "slow_always" or (b == "slow_once" and first):
            await asyncio.sleep(self.slow_seconds)
        return None

    async def _details(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"status_code": 7}, status=401)
        movie = self.by_tmdb.get(int(request.match_info["tmdb_id"]))
        if movie is None or movie.behaviour == "details_404":
            return web.json_response({"status_code": 34}, status=404)
        scripted = await self._scripted(movie, f"details:{movie.tmdb_id}")
        if scripted is not None:
            return scripted
        if movie.behaviour == "not_json":  # a proxy's error page, with status 200
            return web.Response(text="<html><body>Bad gateway</body></html>",
                                content_type="text/html")
        genres = ([n for _, n in movie.tmdb_genres] if movie.behaviour == "genres_strings"
                  else [{"id": i, "name": n} for i, n in movie.tmdb_genres])
        imdb_id = movie.imdb_id if movie.tmdb_imdb_id is None else movie.tmdb_imdb_id
        return web.json_response({
            "id": movie.tmdb_id, "imdb_id": imdb_id, "title": movie.title[:-7],
            "release_date": f"{movie.title[-5:-1]}-01-01", "poster_path": movie.poster_path,
            "genres": genres,
        })

    async def _poster(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        tmdb_id = int(name[1:].split(".")[0]) if name.startswith("p") else -1
        movie = self.by_tmdb.get(tmdb_id)
        if movie is None or movie.behaviour == "poster_404":
            raise web.HTTPNotFound()
        if movie.behaviour == "redirect_loop":
            raise web.HTTPFound("/loop/1")
        if movie.behaviour == "pixel_bomb":
            return web.Response(body=pixel_bomb_png(), content_type="image/png")
        if movie.behaviour == "gzip_bomb":
            return web.Response(body=gzip.compress(padded_poster(movie.tmdb_id), 9),
                                content_type="image/jpeg",
                                headers={"Content-Encoding": "gzip"})
        if movie.behaviour == "oversized":  # chunked: no Content-Length to refuse it by
            response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            data = padded_poster(movie.tmdb_id)
            try:
                for start in range(0, len(data), 1 << 16):
                    await response.write(data[start:start + (1 << 16)])
                await response.write_eof()
            except (ConnectionError, RuntimeError):
                pass  # the client stopped reading, as it should
            return response
        body = poster_jpeg(movie.tmdb_id)
        if movie.behaviour == "truncated":
            return web.Response(body=body[: len(body) // 2], content_type="image/jpeg")
        if movie.behaviour == "html":
            return web.Response(text="<html><body>Service unavailable</body></html>",
                                content_type="text/html")
        return web.Response(body=body, content_type="image/jpeg")

    async def _loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/loop/{int(request.match_info['n']) + 1}")

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"times": [t for t, _ in self.log],
                                  "paths": [p for _, p in self.log]})

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        if request.path != "/_stats":
            self.log.append((time.monotonic(), request.path))
            if self.latency:
                await asyncio.sleep(self.latency)
            if self.down and request.path.startswith(("/3/", "/t/p/")):
                return web.Response(status=503, text="service unavailable")
        return await handler(request)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/movielens/{name}", self._movielens)
        app.router.add_get("/3/movie/{tmdb_id}", self._details)
        app.router.add_get("/t/p/{size}/{file}", self._poster)
        app.router.add_get("/loop/{n}", self._loop)
        app.router.add_get("/_stats", self._stats)
        return app


class ServerThread:
    """Serve `FakeServices` on 127.0.0.1 (a free port) from a background thread."""

    def __init__(self, services: FakeServices) -> None:
        self.services = services
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(self.services.app(), access_log=None)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._runner = runner
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())
        self.loop.close()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    # URLs the client is pointed at
    @property
    def movielens_url(self) -> str:
        return f"{self.url}/movielens"

    @property
    def api_url(self) -> str:
        return f"{self.url}/3"

    @property
    def image_url(self) -> str:
        return f"{self.url}/t/p"


def serve_forever(n_movies: int, api_key: str, latency: float, port_queue) -> None:
    """Entry point of a server process (bench): put the base URL on `port_queue`."""
    movies = make_catalogue(n_movies)
    for movie in movies:  # every movie ends as a poster: a TV-Movie-only one gets Drama too
        movie.tmdb_genres.append((18, "Drama"))
    services = FakeServices(movies, api_key=api_key, latency=latency)
    with ServerThread(services) as server:
        port_queue.put(server.url)
        threading.Event().wait()
