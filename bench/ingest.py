"""Benchmark: the TMDb crawler against a sequential baseline, on loopback servers.

    .venv/bin/python bench/ingest.py [--posters 200] [--baseline-posters 40]
        [--latency 0.15] [--rate-limit R] [--concurrency C] [--repeats 3]

Starts the MovieLens-like and TMDb-like servers (tests/servers) in their own process, with
`--latency` seconds (default 150 ms, a realistic round trip to TMDb) added to every
request. The client's limits default to the project's own TMDb settings
(`TmdbSourceConfig`: requests per second and requests in flight), not to numbers chosen for
the benchmark. Each side runs `--repeats` times (at least 3) into fresh folders (no cache);
its figure is the median run:
1. the real client (`ingest_tmdb`: async, bounded concurrency, rate limit) crawls
   `--posters` movies;
2. a sequential baseline (one urllib request at a time) crawls the first
   `--baseline-posters` of them: its rate is steady, so a subset measures it.
Both fetch each movie's details and poster, check that the poster decodes and write it
atomically. What differs is printed: the real client also fetches the MovieLens release
(2 requests), checks every answer, writes labels.csv and its response cache.

Printed besides posters/s: the client's CPU time per poster (this process; the server runs
in its own) and the most TMDb requests the server received in any sliding 1-second window
of any run (its own arrival times), against the limit. The ceiling is what the limits
allow with the round trip measured in the same run (the sequential baseline's wall time
per request, the set latency plus the loopback's and the client's own): 2 requests per
poster, so at most min(rate limit, in flight / round trip) / 2 posters/s. The load average
is printed at start and end.

The last two lines (bench/measure.py's `closing_lines`):

    ceiling: C posters/s at these limits: ...
    ingest: N posters/s, the real client (P% of the ceiling; X ms CPU per poster, wall ...);
    sequential M posters/s (...), ratio R x; max W requests in any 1 s window (limit L), ...
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.servers

from measure import MIN_REPEATS, closing_lines, load_line, repeat  # noqa: E402

from postergenre.atomic import atomic_open  # noqa: E402
from postergenre.configs import TmdbSourceConfig  # noqa: E402
from postergenre.sources.tmdb import ingest_tmdb, poster_problem  # noqa: E402
from postergenre.sources.tmdb_api import TmdbAuth  # noqa: E402
from tests.servers.fake_services import serve_forever  # noqa: E402

KEY = "bench-key"
REQUESTS_PER_POSTER = 2  # details, then the poster
TMDB_PATHS = ("/3/", "/t/p/")  # the fake server's TMDb API and image CDN


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most timestamps in any half-open window (t - window, t]: every sliding window
    is covered, since the count only changes at a timestamp."""
    times, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def server_log(url: str) -> list[tuple[float, str]]:
    """(arrival time on the server's clock, path) of every request it has received."""
    with urllib.request.urlopen(f"{url}/_stats") as resp:
        stats = json.loads(resp.read())
    return list(zip(stats["times"], stats["paths"], strict=True))


def sequential(url: str, n: int, out: Path) -> int:
    """The naive crawler: one request at a time. Returns the posters written."""
    query = urllib.parse.urlencode({"api_key": KEY})
    done = 0
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
    return done


class Windows:
    """The most TMDb requests (API and images; the MovieLens release is another host in
    reality) per sliding second, over each run's own slice of the server log: runs are
    sequential, so one run's requests never share a window with another's."""

    def __init__(self, url: str) -> None:
        self.url, self.seen, self.worst = url, len(server_log(url)), 0

    def close_run(self) -> int:
        """The run's TMDb requests; updates `worst`."""
        log = server_log(self.url)
        times = [t for t, path in log[self.seen:] if path.startswith(TMDB_PATHS)]
        self.worst, self.seen = max(self.worst, max_in_window(times)), len(log)
        return len(times)


def main() -> None:
    defaults = TmdbSourceConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posters", type=int, default=200)
    parser.add_argument("--baseline-posters", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.15, help="seconds per request")
    parser.add_argument("--rate-limit", type=float, default=defaults.rate_limit,
                        help="requests/second (default: TmdbSourceConfig's)")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency,
                        help="requests in flight (default: TmdbSourceConfig's)")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    args = parser.parse_args()
    if args.repeats < MIN_REPEATS:
        parser.error(f"--repeats must be at least {MIN_REPEATS}")

    print(load_line("start"), flush=True)
    ctx = multiprocessing.get_context("spawn")
    urls = ctx.Queue()
    server = ctx.Process(target=serve_forever, args=(args.posters, KEY, args.latency, urls),
                         daemon=True)
    server.start()
    requests: dict[str, list[int]] = {"real": [], "sequential": []}
    try:
        url = urls.get(timeout=60)
        windows = Windows(url)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            runs = iter(range(2 * args.repeats))

            def real_run() -> dict:
                run = work / f"real{next(runs)}"
                config = TmdbSourceConfig(movielens_url=f"{url}/movielens", api_url=f"{url}/3",
                                          image_url=f"{url}/t/p", cache_dir=str(run / "cache"),
                                          rate_limit=args.rate_limit,
                                          concurrency=args.concurrency)
                summary = ingest_tmdb(run / "data", config, auth=TmdbAuth(api_key=KEY))
                requests["real"].append(windows.close_run())
                if summary["n_posters"] != args.posters:
                    raise SystemExit(f"real client got {summary['n_posters']} posters, "
                                     f"expected {args.posters}: {summary}")
                return summary

            def sequential_run() -> int:
                run = work / f"seq{next(runs)}"
                run.mkdir()
                done = sequential(url, args.baseline_posters, run)
                requests["sequential"].append(windows.close_run())
                if done != args.baseline_posters:
                    raise SystemExit(f"sequential baseline wrote {done} posters, expected "
                                     f"{args.baseline_posters}")
                return done

            real = repeat(real_run, args.posters, args.repeats)
            seq = repeat(sequential_run, args.baseline_posters, args.repeats)
    finally:
        server.terminate()
        server.join(10)

    round_trip = seq.wall_s / (REQUESTS_PER_POSTER * args.baseline_posters)
    ceiling = min(args.rate_limit, args.concurrency / round_trip) / REQUESTS_PER_POSTER
    print(f"limits: {args.rate_limit:g} requests/s, {args.concurrency} in flight "
          f"(TmdbSourceConfig defaults: {defaults.rate_limit:g}/s, {defaults.concurrency}); "
          f"{args.latency * 1000:g} ms latency added per request")
    print(f"real client ({args.posters} posters, TMDb requests per run "
          f"{'/'.join(map(str, requests['real']))}, plus 2 for the MovieLens release): "
          f"{real.describe('poster')}")
    print(f"sequential baseline ({args.baseline_posters} posters, TMDb requests per run "
          f"{'/'.join(map(str, requests['sequential']))}, details and poster only): "
          f"{seq.describe('poster')}")
    print(f"server: most TMDb requests in any sliding 1 s window, over all runs: {windows.worst} "
          f"(limit {args.rate_limit:g})")
    print(load_line("end"))
    closing_lines(
        "ingest",
        f"{ceiling:.2f} posters/s at these limits: {REQUESTS_PER_POSTER} requests per "
        f"poster, min({args.rate_limit:g} requests/s, {args.concurrency} in flight / "
        f"{round_trip * 1000:.0f} ms round trip measured by the sequential baseline) / "
        f"{REQUESTS_PER_POSTER}; one request at a time, at the {args.latency * 1000:g} ms "
        f"latency alone: {1 / (REQUESTS_PER_POSTER * args.latency):.2f} posters/s",
        f"{real.rate:.2f} posters/s, the real client ({real.rate / ceiling:.0%} of the "
        f"ceiling; {real.cpu_us_per_item / 1000:.2f} ms CPU per poster, wall "
        f"{real.wall_s:.1f} s for {args.posters}); sequential {seq.rate:.2f} posters/s "
        f"({seq.cpu_us_per_item / 1000:.2f} ms CPU per poster), ratio "
        f"{real.rate / seq.rate:.1f}x; max {windows.worst} requests in any 1 s window "
        f"(limit {args.rate_limit:g}), {args.latency * 1000:g} ms latency")


if __name__ == "__main__":
    main()
