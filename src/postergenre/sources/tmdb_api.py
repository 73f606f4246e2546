"""The TMDb API client, just what the tmdb source needs: a movie's details and its poster.

Auth comes from the environment only: `TMDB_API_KEY` (a v3 key, sent as the `api_key`
query parameter) or `TMDB_READ_ACCESS_TOKEN` (a v4 read token, sent as a bearer
header). The secret lives in a `TmdbAuth` whose repr hides it; URLs that errors and
logs name never carry it (see `crawler.Fetcher.get`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from postergenre.sources.crawler import Fetcher, Response

DEFAULT_API_URL = "https://api.themoviedb.org/3"
DEFAULT_IMAGE_URL = "https://image.tmdb.org/t/p"
POSTER_SIZES: tuple[str, ...] = ("w92", "w154", "w185", "w342", "w500", "w780", "original")
ENV_API_KEY = "TMDB_API_KEY"
ENV_READ_TOKEN = "TMDB_READ_ACCESS_TOKEN"


class TmdbError(ValueError):
    """A TMDb answer ingest cannot use."""


class TmdbAuthError(TmdbError):
    """TMDb refused the credential: every request would fail, so the crawl stops."""


class TmdbAnswerError(TmdbError):
    """One movie's answer is unusable (not JSON, not the expected shape, an unexpected
    status): that movie fails, the crawl goes on. `reason` is the short report key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class TmdbAuth:
    api_key: str = field(default="", repr=False)
    read_token: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, environ: dict | None = None) -> TmdbAuth:
        env = os.environ if environ is None else environ
        auth = cls(api_key=env.get(ENV_API_KEY, "").strip(),
                   read_token=env.get(ENV_READ_TOKEN, "").strip())
        if not (auth.api_key or auth.read_token):
            raise ValueError(f"--source tmdb needs a TMDb credential: set {ENV_API_KEY} "
                             f"(v3 API key) or {ENV_READ_TOKEN} (v4 read access token)")
        return auth

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.api_key, self.read_token) if s)

    def params(self) -> dict[str, str]:
        # The v4 token is preferred: a header never ends up in a URL.
        return {} if self.read_token else {"api_key": self.api_key}

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.read_token}"} if self.read_token else {}


class TmdbClient:
    """Details from the API (with the credential), posters from the image CDN (without)."""

    def __init__(self, fetcher: Fetcher, auth: TmdbAuth, api_url: str, image_url: str,
                 poster_size: str) -> None:
        if poster_size not in POSTER_SIZES:
            raise ValueError(f"unknown poster size {poster_size!r}; choose one of "
                             f"{', '.join(POSTER_SIZES)}")
        self.fetcher = fetcher
        self.auth = auth
        self.api_url = api_url.rstrip("/")
        self.image_url = image_url.rstrip("/")
        self.poster_size = poster_size

    async def details(self, tmdb_id: str) -> dict | None:
        """GET /movie/{id}: the details dict, or None when TMDb has no such movie (404)."""
        url = f"{self.api_url}/movie/{tmdb_id}"
        resp = await self.fetcher.get(url, params=self.auth.params(),
                                      headers=self.auth.headers())
        if resp.status == 404:
            return None
        if resp.status in (401, 403):
            raise TmdbAuthError(f"{url}: HTTP {resp.status}: TMDb refused the credential "
                                f"in {ENV_API_KEY} / {ENV_READ_TOKEN}")
        if resp.status != 200:
            raise TmdbAnswerError(f"details_http_{resp.status}",
                                  f"{url}: unexpected HTTP {resp.status}")
        try:
            return json.loads(resp.body)
        except ValueError:  # UnicodeDecodeError included
            start = resp.body[:60].decode("utf-8", "replace")
            raise TmdbAnswerError("details_not_json", f"{url}: the answer is not JSON "
                                  f"({resp.content_type or 'no content type'}: "
                                  f"{start!r})") from None

    def poster_url(self, poster_path: str) -> str:
        return f"{self.image_url}/{self.poster_size}/{poster_path.lstrip('/')}"

    async def poster(self, poster_path: str) -> Response:
        """GET the poster from the image CDN (no credential: the CDN needs none)."""
        return await self.fetcher.get(self.poster_url(poster_path))
