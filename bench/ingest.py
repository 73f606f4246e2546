"""Benchmark: the TMDb crawler against a sequential baseline, on loopback servers.

Starts the MovieLens-like and TMDb-like servers (tests/servers) in their own process,
with `--latency` seconds added to every request, then:
1. the real client (`ingest_tmdb`: async, bounded concurrency, token bucket) crawls
   `--posters` movies (details + poster each);
2. a sequential baseline (one urllib request at a time, the same requests, the same
   decode check and atomic write) crawls the first `--baseline-posters` of them (its
   rate is steady, so a subset measures it without minutes of waiting).
The last line prints posters per second for both, their ratio (target >= 10x), and the
most requests the server saw in any one-second window (must not exceed --rate-limit).

    .venv/bin/python bench/ingest.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.servers

from postergenre.atomic import atomic_open  # noqa: E402
from postergenre.configs import TmdbSourceConfig  # noqa: E402
from postergenre.sources.tmdb import ingest_tmdb, poster_problem  # noqa: E402
from postergenre.sources.tmdb_api import TmdbAuth  # noqa: E402
from tests.servers.fake_services import serve_forever  # noqa: E402

KEY = "bench-key"


def _max_in_window(times: list[float], window: float = 1.0) -> int:
    times, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _stats(url: str) -> list[float]:
    with urllib.request.urlopen(f"{url}/_stats") as resp:
        return json.loads(resp.read())["times"]


def _sequential(url: str, n: int, out: Path) -> float:
    """The naive crawler: one request at a time. Returns posters per second."""
    query = urllib.parse.urlencode({"api_key": KEY})
    start, done = time.perf_counter(), 0
    for i in range(n):
        tmdb_id = 5000 + i
        with urllib.request.urlopen(f"{url}/3/movie/{tmdb_id}?{query}") as resp:
            details = json.loads(resp.read())
        with urllib.request.urlopen(f"{url}/t/p/w500{details['poster_path']}") as resp:
            body, ctype = resp.read(), resp.headers.get("Content-Type", "")
        if poster_problem(body, ctype) is None:
            with atomic_open(out / f"{details['imdb_id']}.jpg", "wb") as handle:
                handle.write(body)
            done += 1
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posters", type=int, default=2000)
    parser.add_argument("--baseline-posters", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--rate-limit", type=float, default=400.0, help="requests/second")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    urls = ctx.Queue()
    server = ctx.Process(target=serve_forever, args=(args.posters, KEY, args.latency, urls),
                         daemon=True)
    server.start()
    try:
        url = urls.get(timeout=60)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            start = time.perf_counter()
            config = TmdbSourceConfig(movielens_url=f"{url}/movielens", api_url=f"{url}/3",
                                      image_url=f"{url}/t/p", cache_dir=str(work / "cache"),
                                      rate_limit=args.rate_limit,
                                      concurrency=args.concurrency)
            summary = ingest_tmdb(work / "data", config, auth=TmdbAuth(api_key=KEY))
            real_s = time.perf_counter() - start
            if summary["n_posters"] != args.posters:
                raise SystemExit(f"real client got {summary['n_posters']} posters, "
                                 f"expected {args.posters}: {summary}")
            window = _max_in_window(_stats(url))
            real = summary["n_posters"] / real_s
            (work / "seq").mkdir()
            seq = _sequential(url, args.baseline_posters, work / "seq")
    finally:
        server.terminate()
        server.join(10)
    print(f"real client: {summary['n_posters']} posters in {real_s:.1f} s "
          f"({summary['http']['requests']} requests, {args.concurrency} in flight, "
          f"limit {args.rate_limit:g} req/s); sequential: {args.baseline_posters} posters")
    print(f"ingest bench: real client {real:.1f} posters/s, sequential baseline {seq:.1f} "
          f"posters/s, ratio {real / seq:.1f}x (target >= 10x); max requests in any 1 s "
          f"window {window} (limit {args.rate_limit:g}) at {args.latency * 1000:g} ms "
          f"latency per request")


if __name__ == "__main__":
    main()
