"""Polite, persistent async HTTP: bounded concurrency, a sliding-window rate limit, retries.

One `Fetcher` serves a whole crawl:
- at most `concurrency` requests in flight (a semaphore, released while a request
  waits to be retried, so a backing-off request does not block the others);
- a sliding-window limiter (`SlidingWindowLimiter`) that holds the limit as the server
  counts it: at most N requests in any one-second window of *arrivals*. A token bucket
  that held the limit at the client was measured at 11 requests in one second at a limit
  of 10 (43 at 40, 402 at 400), and a sliding window over start times at 61 at 40: the
  delay from start to arrival varies by hundreds of milliseconds (new connections, a
  busy event loop, the network), so a late request of one second lands among the prompt
  ones of the next. So a request counts against the window from its start until its
  answer's headers arrive (its arrival at the server lies in between), then for one
  second (plus `ARRIVAL_MARGIN`, for the server's clock and closed windows) from that
  answer. Then N + 1 arrivals never fit in one second, whatever the delays;
- retries with exponential backoff and full jitter on 429, 5xx, timeouts and broken
  connections; a 429's `Retry-After` pauses the whole limiter (every request, not just
  the one refused), since the server is telling the client, not the request, to wait;
- a timeout per request;
- redirects followed here, not inside aiohttp, so each hop is a request like any other:
  it waits for the rate limiter and counts in the stats; at most `MAX_REDIRECTS` hops (a
  redirect loop fails its request at once, it is not retried), to http(s) only, and a
  hop to another host carries neither the query nor the headers (the credential);
- a byte cap on every answer (images.MAX_POSTER_BYTES, the one cap predict and validate
  use too), read as a stream: a Content-Length over it is refused before the body is read,
  a body is refused as soon as it passes it, and a gzip or deflate body is inflated here,
  a bounded piece at a time, so a small compressed answer cannot inflate past the cap in
  memory either. Such an answer fails its request (`too_large`) without a retry.

Nothing here logs or returns a URL's query string: that is where a TMDb v3 key travels.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
import zlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from postergenre.data.images import MAX_POSTER_BYTES

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
# Content codings this client inflates itself (bounded); aiohttp would also offer br.
ACCEPT_ENCODING = "gzip, deflate"


class FetchFailedError(Exception):
    """A request that still failed after every retry; `reason` says how (no URL, no key)."""

    def __init__(self, reason: str, where: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.reason = reason


# Seconds a finished request keeps counting beyond one second: the server's window may be
# closed ([t, t + 1]) and its clock is not ours.
ARRIVAL_MARGIN = 0.05


class SlidingWindowLimiter:
    """At most `limit` requests in any window of `window` seconds, counting each request
    from `acquire` (its start) until `window` seconds after its `release` (its answer):
    wherever in between the server saw it, no `window` of arrivals holds `limit` + 1.

    `clock` and `sleep` are injectable, so tests run on a fake clock.
    """

    def __init__(self, limit: int, window: float = 1.0, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        if limit < 1:
            raise ValueError(f"a sliding window needs at least 1 request, got {limit}")
        if window <= 0:
            raise ValueError(f"window must be positive, got {window}")
        self.limit = int(limit)
        self.window = float(window)
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0
        self._done: deque[float] = deque()  # answer times, oldest first
        self._released = asyncio.Event()
        self._paused_until = float("-inf")
        self._lock = asyncio.Lock()  # FIFO: waiters are served in arrival order

    @classmethod
    def for_limit(cls, limit: float, margin: float = ARRIVAL_MARGIN, **kw: Any,
                  ) -> SlidingWindowLimiter:
        """A limiter that keeps any one-second window of the server's at `limit` requests
        or fewer (`limit` below 1: one request per 1/limit seconds)."""
        if limit <= 0:
            raise ValueError(f"rate limit must be positive, got {limit}")
        if margin < 0:
            raise ValueError(f"margin must be 0 or more, got {margin}")
        # A fractional limit rounds down: 2.5 req/s allows 2 in any second, never 3.
        n = max(1, math.floor(limit))
        return cls(n, max(1.0, n / limit) + margin, **kw)

    def pause(self, seconds: float) -> None:
        """Start no request for `seconds` (a server's Retry-After)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def acquire(self) -> None:
        """Wait for a slot; the caller must `release` it once the answer (or error) came."""
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await self._nap(self._paused_until - now)
                    continue
                # Answers a whole window ago or more no longer count.
                while self._done and now - self._done[0] >= self.window:
                    self._done.popleft()
                if self._in_flight + len(self._done) < self.limit:
                    self._in_flight += 1
                    return
                if self._done:
                    await self._nap(self._done[0] + self.window - now)
                else:  # every slot is a request still in flight: wait for an answer
                    self._released.clear()
                    await self._released.wait()

    def release(self) -> None:
        """The request's answer (or failure) came: it counts one more window from now."""
        self._in_flight -= 1
        self._done.append(self._clock())
        self._released.set()

    async def _nap(self, seconds: float) -> None:
        # A timer may fire early (the loop rounds to its clock resolution): the loop above
        # checks again. Never a zero sleep, which on a fake clock would not advance time.
        await self._sleep(max(seconds, 1e-6))


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int  # tries in all, the first included (the config's retries + 1)
    base_delay: float = 0.5  # seconds; the cap doubles each retry
    max_delay: float = 30.0
    max_retry_after: float = 120.0  # a longer Retry-After fails the request instead

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, min(max, base * 2^retry)]."""
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2.0 ** retry))


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str


@dataclass
class FetchStats:
    requests: int = 0
    retries: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_error: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"requests": self.requests, "retries": self.retries,
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "by_error": dict(sorted(self.by_error.items()))}


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) -> seconds from now, or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Fetcher:
    """GET with concurrency bound, rate limit, retries, timeouts, redirects and a byte cap
    (see the module doc)."""

    def __init__(self, session: aiohttp.ClientSession, *, rate: float, concurrency: int,
                 timeout: float, retry: RetryPolicy, seed: int | None = None,
                 max_bytes: int = MAX_POSTER_BYTES) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.session = session
        self.limiter = SlidingWindowLimiter.for_limit(rate)
        self.slots = asyncio.Semaphore(concurrency)
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.retry = retry
        self.max_bytes = max_bytes
        self.stats = FetchStats()
        self._rng = random.Random(seed)

    async def _attempt(self, url: str, params: dict | None, headers: dict | None) -> Response:
        """One try: the request and each redirect hop after it (see the module doc)."""
        target: str | URL = url
        headers = {**(headers or {}), "Accept-Encoding": ACCEPT_ENCODING}
        async with self.slots:
            for _ in range(MAX_REDIRECTS + 1):
                await self.limiter.acquire()
                released = False
                try:
                    self.stats.requests += 1
                    async with self.session.get(target, params=params, headers=headers,
                                                timeout=self.timeout, allow_redirects=False,
                                                auto_decompress=False) as resp:
                        # The headers are here: the server has seen the request.
                        self.limiter.release()
                        released = True
                        location = resp.headers.get("Location")
                        if resp.status not in REDIRECT_STATUSES or not location:
                            return await self._read(resp, url)
                        here = resp.url
                finally:
                    if not released:  # timeout or broken connection before any answer
                        self.limiter.release()
                try:
                    target = here.join(URL(location))
                except ValueError:
                    raise FetchFailedError("bad_redirect", url) from None
                if target.scheme not in ("http", "https"):
                    raise FetchFailedError("bad_redirect", url)
                params = None  # the hop's URL is the server's, query and all
                if target.origin() != here.origin():
                    headers = {"Accept-Encoding": ACCEPT_ENCODING}
        raise FetchFailedError(f"too_many_redirects (over {MAX_REDIRECTS})", url)

    async def _read(self, resp: aiohttp.ClientResponse, url: str) -> Response:
        body = await self._body(resp, url)
        if resp.status == 429:
            wait = retry_after_seconds(resp.headers.get("Retry-After"))
            if wait is not None:
                if wait > self.retry.max_retry_after:
                    raise FetchFailedError(f"rate_limited (Retry-After {wait:.0f} s)", url)
                self.limiter.pause(wait)
        return Response(resp.status, body, resp.headers.get("Content-Type", ""))

    async def _body(self, resp: aiohttp.ClientResponse, url: str) -> bytes:
        """The answer's body, inflated, read up to the byte cap (see the module doc)."""
        cap = self.max_bytes
        too_large = f"too_large (over {cap} bytes)"
        if resp.content_length is not None and resp.content_length > cap:
            raise FetchFailedError(too_large, url)
        coding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if coding not in ("identity", "gzip", "x-gzip", "deflate"):
            raise FetchFailedError(f"unsupported_encoding ({coding[:20]})", url)
        # wbits 47: a gzip or a zlib stream, told by its header ("deflate" is zlib's).
        inflate = None if coding == "identity" else zlib.decompressobj(47)
        body = bytearray()
        try:
            async for chunk in resp.content.iter_chunked(1 << 16):
                if inflate is not None:
                    chunk = inflate.decompress(chunk, cap + 1 - len(body))
                    if inflate.unconsumed_tail:  # more output than the cap has room for
                        raise FetchFailedError(too_large, url)
                body += chunk
                if len(body) > cap:
                    raise FetchFailedError(too_large, url)
            if inflate is not None:
                body += inflate.flush()
        except zlib.error:
            raise FetchFailedError(f"bad_encoding ({coding})", url) from None
        if len(body) > cap:
            raise FetchFailedError(too_large, url)
        return bytes(body)

    async def get(self, url: str, params: dict | None = None,
                  headers: dict | None = None) -> Response:
        """The final response (2xx, or a 4xx other than 429); FetchFailedError when retries run out.

        `url` must hold no secret: it is what errors and logs name. Secrets go in
        `params` or `headers`.
        """
        reason = ""
        for attempt in range(self.retry.attempts):
            if attempt:
                self.stats.retries += 1
                await asyncio.sleep(self.retry.backoff(attempt - 1, self._rng))
            try:
                resp = await self._attempt(url, params, headers)
            except TimeoutError:
                reason = "timeout"
            except aiohttp.ClientPayloadError:
                reason = "incomplete_body"
            except aiohttp.ClientError as err:
                # The class name only: aiohttp's messages can carry the full URL.
                reason = f"connection_error ({type(err).__name__})"
            else:
                self.stats.by_status[resp.status] += 1
                if resp.status not in RETRY_STATUSES:
                    return resp
                reason = f"http_{resp.status}"
            if not reason.startswith("http_"):
                self.stats.by_error[reason] += 1
            log.debug("GET %s: %s (attempt %d of %d)", url, reason, attempt + 1,
                      self.retry.attempts)
        raise FetchFailedError(reason, url)
