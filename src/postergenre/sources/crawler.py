"""Polite, persistent async HTTP: bounded concurrency, a token bucket, retries.

One `Fetcher` serves a whole crawl:
- at most `concurrency` requests in flight (a semaphore, released while a request
  waits to be retried, so a backing-off request does not block the others);
- a token bucket sized from the limit L (requests per second): above 20 req/s it holds
  c = L/20 tokens and refills at L - c per second, so any one-second window sees at most
  the c stored plus the L - c refilled: never more than L, however bursts fall, while
  the small store absorbs the event loop's timer jitter (a bucket of one token loses
  every late wake-up for good, which cost a third of the throughput at 400 req/s);
- retries with exponential backoff and full jitter on 429, 5xx, timeouts and broken
  connections; a 429's `Retry-After` pauses the whole bucket (every request, not just
  the one refused), since the server is telling the client, not the request, to wait;
- a timeout per attempt.

Nothing here logs or returns a URL's query string: that is where a TMDb v3 key travels.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class FetchFailedError(Exception):
    """A request that still failed after every retry; `reason` says how (no URL, no key)."""

    def __init__(self, reason: str, where: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.reason = reason


class TokenBucket:
    """`rate` tokens per second, at most `capacity` stored; `acquire` takes one."""

    def __init__(self, rate: float, capacity: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError(f"rate limit must be positive, got {rate}")
        if capacity < 1:
            raise ValueError(f"token bucket capacity must be at least 1, got {capacity}")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()  # FIFO: waiters are served in arrival order

    @classmethod
    def for_limit(cls, limit: float) -> TokenBucket:
        """A bucket that never starts more than `limit` requests in any one-second window."""
        if limit <= 0:
            raise ValueError(f"rate limit must be positive, got {limit}")
        if limit <= 20.0:
            # One token: requests start at least 1/limit s apart, so any half-open
            # one-second window holds at most `limit` of them.
            return cls(limit, 1.0)
        capacity = limit / 20.0
        return cls(limit - capacity, capacity)

    def pause(self, seconds: float) -> None:
        """Hand out no token for `seconds` (a server's Retry-After)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)


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
    """GET with concurrency bound, rate limit, retries and timeouts (see the module doc)."""

    def __init__(self, session: aiohttp.ClientSession, *, rate: float, concurrency: int,
                 timeout: float, retry: RetryPolicy, seed: int | None = None) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.session = session
        self.bucket = TokenBucket.for_limit(rate)
        self.slots = asyncio.Semaphore(concurrency)
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.retry = retry
        self.stats = FetchStats()
        self._rng = random.Random(seed)

    async def _attempt(self, url: str, params: dict | None, headers: dict | None) -> Response:
        async with self.slots:
            await self.bucket.acquire()
            self.stats.requests += 1
            async with self.session.get(url, params=params, headers=headers,
                                        timeout=self.timeout, allow_redirects=True) as resp:
                body = await resp.read()
                if resp.status == 429:
                    wait = retry_after_seconds(resp.headers.get("Retry-After"))
                    if wait is not None:
                        if wait > self.retry.max_retry_after:
                            raise FetchFailedError(f"rate_limited (Retry-After {wait:.0f} s)", url)
                        self.bucket.pause(wait)
                return Response(resp.status, body, resp.headers.get("Content-Type", ""))

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
