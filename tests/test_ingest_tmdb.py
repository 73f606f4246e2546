"""The tmdb source against TMDb-like and MovieLens-like servers on loopback."""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from postergenre.configs import TmdbSourceConfig
from postergenre.data.labels import read_labels
from postergenre.sources import movielens
from postergenre.sources.crawler import (
    ARRIVAL_MARGIN,
    SlidingWindowLimiter,
    retry_after_seconds,
)
from postergenre.sources.tmdb import ingest_tmdb, poster_problem
from postergenre.sources.tmdb_api import TmdbAuth, TmdbError
from tests.servers.fake_services import (
    FakeServices,
    ServerThread,
    make_catalogue,
    poster_jpeg,
)

KEY = "sk-TEST-v3key-do-not-leak-7f3a91"
TOKEN = "eyJTEST-v4token-do-not-leak-c0ffee"
BIN = Path(sys.executable).parent

# Scripted movies (catalogue index -> behaviour); every other movie is well behaved.
SCRIPT = {2: "details_404", 3: "no_poster_path", 4: "poster_404", 5: "truncated", 6: "html",
          7: "429_once", 8: "500_once", 9: "500_always", 10: "slow_once", 11: "slow_always"}


def _catalogue(n: int = 16):
    movies = make_catalogue(n, seed=1, behaviours=SCRIPT)
    # Known rows for the join and the genre mapping:
    movies[0].ml_genres = ["Children", "Film-Noir", "Sci-Fi"]
    movies[0].tmdb_genres = [(878, "Science Fiction"), (10770, "TV Movie")]
    movies[1].tmdb_id = None  # links.csv has no tmdbId
    for m in movies[2:12]:
        m.tmdb_genres = [(18, "Drama")]  # so each ends by its behaviour, not for no genre
    movies[12].tmdb_genres = [(10770, "TV Movie")]  # nothing left after mapping
    movies[12].ml_genres = ["IMAX"]
    return movies


@pytest.fixture()
def server():
    services = FakeServices(_catalogue(), api_key=KEY, read_token=TOKEN, slow_seconds=1.5)
    with ServerThread(services) as running:
        yield running


def _run(server, tmp_path, auth=None, **settings):
    """The tmdb source on the loopback servers; `settings` override TmdbSourceConfig's."""
    options = dict(movielens_url=server.movielens_url, api_url=server.api_url,
                   image_url=server.image_url, cache_dir=str(tmp_path / "cache"),
                   timeout=0.5, retries=2, rate_limit=100.0, concurrency=4)
    config = TmdbSourceConfig(**{**options, **settings})
    return ingest_tmdb(tmp_path / "data", config, report_path=tmp_path / "report.json",
                       auth=auth or TmdbAuth(api_key=KEY))


def _cli_flags(server, tmp_path, name: str) -> list[str]:
    """`postergenre ingest` of the tmdb source on the loopback servers; settings as the
    flags the CLI generates from IngestConfig (--tmdb-<setting>)."""
    return ["ingest", "--source", "tmdb", "--out", str(tmp_path / name),
            "--report", str(tmp_path / f"{name}-report.json"),
            "--tmdb-movielens-url", server.movielens_url, "--tmdb-api-url", server.api_url,
            "--tmdb-image-url", server.image_url,
            "--tmdb-cache-dir", str(tmp_path / f"{name}-cache")]


def test_join_mapping_and_every_outcome_in_the_report(server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    summary = _run(server, tmp_path)
    labels = read_labels(tmp_path / "data").set_index("movielens_id")
    report = json.loads((tmp_path / "report.json").read_text())
    reasons = {e["movielens_id"]: (e["outcome"], e["reason"]) for e in report["excluded"]}

    # Join: links.csv ids with movies.csv title; TMDb's Science Fiction -> Sci-Fi,
    # TV Movie dropped; source_genres keeps TMDb's names.
    first = labels.loc["1"]
    assert (first.imdb_id, first.tmdb_id, first.title) == ("tt1000000", "5000",
                                                           "Fake movie 1 (1980)")
    assert first.genres == "Sci-Fi"
    assert first.source_genres == "Science Fiction|TV Movie"
    assert first.poster == "posters/tt1000000.jpg"
    assert (tmp_path / "data" / first.poster).read_bytes() == poster_jpeg(5000)

    assert reasons == {
        "2": ("missing", "no_tmdb_id"),
        "3": ("missing", "tmdb_not_found"),
        "4": ("missing", "no_poster_path"),
        "5": ("missing", "poster_not_found"),
        "6": ("failed", "undecodable_image"),  # a truncated JPEG
        "7": ("failed", "html_body"),
        "10": ("failed", "http_500"),  # 500 on every try
        "12": ("failed", "timeout"),  # slower than the timeout on every try
        "13": ("missing", "no_genre"),
    }
    # A 429 with Retry-After, a single 500 and a single slow answer all end fetched.
    assert {"8", "9", "11"} <= set(labels.index)
    assert summary["n_posters"] == len(labels) == 16 - len(reasons)
    assert summary["fetched"] == len(labels) and summary["skipped"] == 0
    assert summary["missing_by_reason"] == {"no_genre": 1, "no_poster_path": 1,
                                            "no_tmdb_id": 1, "poster_not_found": 1,
                                            "tmdb_not_found": 1}
    assert summary["failed_by_reason"] == {"html_body": 1, "http_500": 1, "timeout": 1,
                                           "undecodable_image": 1}
    assert summary["http"]["by_status"]["429"] == 1

    # Retry-After: 1 was honoured: the retry came at least a second after the 429.
    times = [t for t, path in server.services.log if path == "/3/movie/5007"]
    assert len(times) == 2 and times[1] - times[0] >= 0.95
    # Only whole posters in the folder, no temp file.
    names = sorted(p.name for p in (tmp_path / "data" / "posters").iterdir())
    assert names == sorted(Path(p).name for p in labels.poster)


def test_max_movies_takes_the_first_movielens_movies(server, tmp_path):
    summary = _run(server, tmp_path, max_movies=3)
    assert summary["movies"] == 3
    assert list(read_labels(tmp_path / "data").movielens_id) == ["1"]  # 2: no tmdbId, 3: 404
    with pytest.raises(ValueError, match="max_movies"):
        _run(server, tmp_path, max_movies=-1)


def test_label_source_movielens_and_union(server, tmp_path):
    _run(server, tmp_path / "ml", label_source="movielens")
    _run(server, tmp_path / "union", label_source="union")
    ml = read_labels(tmp_path / "ml" / "data").set_index("movielens_id")
    union = read_labels(tmp_path / "union" / "data").set_index("movielens_id")
    # MovieLens: Children -> Family, Film-Noir dropped.
    assert ml.loc["1"].genres == "Family|Sci-Fi"
    assert ml.loc["1"].source_genres == "Children|Film-Noir|Sci-Fi"
    assert union.loc["1"].genres == "Family|Sci-Fi"
    # The IMAX-only / TV-Movie-only movie has no genre under any label source.
    assert "13" not in ml.index and "13" not in union.index


def test_rerun_skips_what_is_done_and_is_idempotent(server, tmp_path):
    _run(server, tmp_path)
    labels = (tmp_path / "data" / "labels.csv").read_bytes()
    before = len(server.services.log)
    again = _run(server, tmp_path)
    assert (tmp_path / "data" / "labels.csv").read_bytes() == labels
    assert again["fetched"] == 0
    # Only the four failures are tried again: 1 + 1 poster requests (truncated, html),
    # 3 tries each for the always-500 and the always-slow movie's details.
    assert len(server.services.log) - before == 1 + 1 + 3 + 3
    assert again["skipped"] == 16 - 1 - 4  # all but no_tmdb_id and the four failures


def test_the_key_never_appears_in_logs_reports_or_outputs(server, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    _run(server, tmp_path)  # v3 key, with retries, timeouts and failures on the way
    env = {**os.environ, "TMDB_READ_ACCESS_TOKEN": TOKEN, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("TMDB_API_KEY", None)
    # cwd: a folder without params.yaml, so only these flags and the defaults apply.
    cli = subprocess.run(
        ["postergenre", "-v", *_cli_flags(server, tmp_path, "cli"), "--tmdb-timeout", "0.5",
         "--tmdb-retries", "1", "--tmdb-rate-limit", "100"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    # The v4 token was accepted.
    assert json.loads((tmp_path / "cli-report.json").read_text())["n_posters"] == 7

    captured = capsys.readouterr()
    texts = [caplog.text, captured.out, captured.err, cli.stdout, cli.stderr]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("latin-1"))
    assert len(texts) > 20
    for text in texts:
        assert KEY not in text and TOKEN not in text


def test_a_refused_key_stops_with_a_clear_error_that_does_not_show_it(server, tmp_path):
    with pytest.raises(TmdbError, match="refused the credential") as err:
        _run(server, tmp_path, auth=TmdbAuth(api_key="wrong-key-123"))
    assert "wrong-key-123" not in str(err.value)


def test_no_credential_names_both_variables(tmp_path):
    with pytest.raises(ValueError, match="TMDB_API_KEY.*TMDB_READ_ACCESS_TOKEN"):
        TmdbAuth.from_env({})
    assert "secret" not in repr(TmdbAuth(api_key="secret"))


def test_movielens_checksum_is_verified_and_the_zip_cached(server, tmp_path):
    cache = tmp_path / "ml"
    with pytest.raises(movielens.ChecksumError, match="not the published"):
        movielens.fetch_release("ml-latest-small", cache, server.movielens_url,
                                expected_md5="0" * 32)
    assert not (cache / "ml-latest-small.zip").exists()
    path = movielens.fetch_release("ml-latest-small", cache, server.movielens_url)
    # Cached with its checksum: a second call needs no server at all.
    again = movielens.fetch_release("ml-latest-small", cache, "http://127.0.0.1:9")
    assert again == path
    rows = movielens.read_movies(path)
    assert rows[0] == movielens.MovieLensMovie("1", "tt1000000", "5000", "Fake movie 1 (1980)",
                                               ("Children", "Film-Noir", "Sci-Fi"))
    assert rows[1].tmdb_id == ""


def test_poster_problem_names_each_kind_of_bad_body():
    jpeg = poster_jpeg(1)
    assert poster_problem(jpeg, "image/jpeg") is None
    assert poster_problem(jpeg[: len(jpeg) // 2], "image/jpeg") == "undecodable_image"
    assert poster_problem(b"<html></html>", "image/jpeg") == "html_body"
    assert poster_problem(b"", "image/jpeg") == "empty_body"


class FakeClockLoop(asyncio.SelectorEventLoop):
    """An event loop on a fake clock: when every task waits, time jumps to the next timer
    instead of passing. asyncio.sleep, timeouts and the limiter all run on it, and a test
    of many seconds takes milliseconds of wall-clock time."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        select = self._selector.select

        def select_without_waiting(timeout=None):
            if timeout is None:  # nothing scheduled and nothing ready: it would hang
                raise RuntimeError("deadlock: every task waits and no timer is set")
            if timeout > 0:  # a timer is due later: go there (at least 1 us: a real clock
                self.now += max(timeout, 1e-6)  # always moves, a float sum may not)
            return select(0)

        self._selector.select = select_without_waiting

    def time(self) -> float:
        return self.now


def _on_fake_clock(main):
    loop = FakeClockLoop()
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()


def _most_in_one_second(times: list[float]) -> int:
    """The most `times` in any closed one-second window [t, t + 1], as a server counts."""
    times = sorted(times)
    return max(bisect.bisect_right(times, t + 1.0) - i for i, t in enumerate(times))


def _crawl_on_fake_clock(limit: int, n: int, takers: int, delay) -> tuple[list, list, float]:
    """`takers` workers make `n` requests through one limiter; request i reaches the server
    `delay(i)[0]` s after its start and its answer comes `delay(i)[1]` s after that.
    Returns (starts, arrivals, end time)."""
    async def main(loop):
        limiter = SlidingWindowLimiter.for_limit(limit, clock=loop.time)
        starts, arrivals = [], []
        todo = iter(range(n))

        async def worker():
            for i in todo:
                await limiter.acquire()
                starts.append(loop.time())
                to_server, to_answer = delay(i)
                await asyncio.sleep(to_server)
                arrivals.append(loop.time())
                await asyncio.sleep(to_answer)
                limiter.release()

        await asyncio.gather(*(worker() for _ in range(takers)))
        return starts, arrivals, loop.time()

    return _on_fake_clock(main)


@pytest.mark.parametrize("limit", [10, 40, 400])
@pytest.mark.parametrize("traffic", ["prompt", "jittery", "slow_first_burst"])
def test_sliding_window_holds_the_limit_as_the_server_counts_it(limit, traffic):
    rng = random.Random(limit)
    delays = {
        "prompt": lambda i: (0.0, 0.0),
        # Starts reach the server 0-300 ms late, in any order (connections, a busy loop).
        "jittery": lambda i: (rng.uniform(0, 0.3), rng.uniform(0, 0.05)),
        # What broke the token bucket: the first burst waits for new connections.
        "slow_first_burst": lambda i: (0.3 if i < limit else 0.001, 0.01),
    }[traffic]
    n = 5 * limit
    starts, arrivals, end = _crawl_on_fake_clock(limit, n, takers=2 * limit, delay=delays)
    assert len(arrivals) == n
    assert _most_in_one_second(arrivals) <= limit  # as the server counts
    assert _most_in_one_second(starts) <= limit
    # ... and it does not throttle far below the limit: N per (window + answer time).
    assert end <= 5 * (1 + ARRIVAL_MARGIN + 0.35) + 0.5
    assert _most_in_one_second(arrivals) >= 0.7 * limit


def test_sliding_window_waits_for_answers_and_pauses_for_retry_after():
    async def main(loop):
        limiter = SlidingWindowLimiter.for_limit(2, clock=loop.time)
        await limiter.acquire()
        await limiter.acquire()  # two in flight: the third waits for an answer
        third = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(5.0)
        assert not third.done()
        limiter.release()  # answered at 5.0: it counts until 5.0 + 1.05
        await third
        waited = loop.time()
        limiter.pause(3.0)
        limiter.release()
        limiter.release()
        await limiter.acquire()
        return waited, loop.time()

    waited, after_pause = _on_fake_clock(main)
    assert waited == pytest.approx(5.0 + 1.0 + ARRIVAL_MARGIN)
    assert after_pause == pytest.approx(waited + 3.0)


def test_sliding_window_takes_fractional_limits():
    starts, _, _ = _crawl_on_fake_clock(0.5, 3, takers=3, delay=lambda i: (0.0, 0.0))
    assert list(np.diff(starts)) == pytest.approx([2.0 + ARRIVAL_MARGIN] * 2)  # one per 2 s
    with pytest.raises(ValueError, match="rate limit must be positive"):
        SlidingWindowLimiter.for_limit(0)


def test_retry_after_parses_seconds_and_dates():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def _posters_state(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "posters").iterdir())}


@pytest.mark.slow
def test_sigkill_mid_crawl_then_rerun_equals_an_uninterrupted_run(tmp_path):
    movies = make_catalogue(80, seed=2, behaviours={5: "poster_404", 9: "details_404"})
    services = FakeServices(movies, api_key=KEY, latency=0.02)
    env = {**os.environ, "TMDB_API_KEY": KEY, "PATH": f"{BIN}:{os.environ['PATH']}"}
    with ServerThread(services) as server:
        def cmd(name):
            return ["postergenre", *_cli_flags(server, tmp_path, name), "--tmdb-rate-limit",
                    "40", "--tmdb-concurrency", "4", "--tmdb-label-source", "union"]

        # Uninterrupted reference run (cwd without params.yaml: only these flags apply).
        subprocess.run(cmd("whole"), env=env, cwd=tmp_path, check=True, capture_output=True,
                       timeout=120)
        # Killed once a third of the posters are down, then rerun.
        proc = subprocess.Popen(cmd("killed"), env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # A run's new posters wait in the incoming folder until it ends well.
        posters = tmp_path / "killed" / ".posters.incoming"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if posters.is_dir() and sum(1 for _ in posters.glob("*.jpg")) >= 25:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert not (tmp_path / "killed" / "labels.csv").exists()  # killed mid-crawl
        done_before = sum(1 for _ in posters.glob("*.jpg"))
        assert 25 <= done_before < 78
        requests_before = len(services.log)
        subprocess.run(cmd("killed"), env=env, cwd=tmp_path, check=True, capture_output=True,
                       text=True, timeout=120)
    summary = json.loads((tmp_path / "killed-report.json").read_text())
    assert summary["skipped"] >= done_before  # the finished posters were not fetched again
    assert len(services.log) - requests_before < 2 * 80 - done_before
    assert (tmp_path / "killed" / "labels.csv").read_bytes() == \
        (tmp_path / "whole" / "labels.csv").read_bytes()
    assert _posters_state(tmp_path / "killed") == _posters_state(tmp_path / "whole")
    leftovers = [p for p in (tmp_path / "killed").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


# -- issue 13: one bad answer fails its movie, never the crawl; ids checked as file names --


def _bad_answers_catalogue():
    """Six well-behaved movies, and three whose TMDb answer is bad in its own way."""
    movies = make_catalogue(9, seed=5, behaviours={2: "not_json", 4: "genres_strings"})
    for m in movies:
        m.tmdb_genres = [(18, "Drama")]
    movies[6].imdb = None  # links.csv has no imdbId: TMDb's is used, and it is hostile
    movies[6].tmdb_imdb_id = "../../escaped"
    return movies


def test_bad_answers_fail_their_movie_and_the_crawl_goes_on(tmp_path):
    services = FakeServices(_bad_answers_catalogue(), api_key=KEY)
    with ServerThread(services) as server:
        summary = _run(server, tmp_path)
        report = json.loads((tmp_path / "report.json").read_text())
        failed = {e["movielens_id"]: e for e in report["excluded"] if e["outcome"] == "failed"}
        assert {k: v["reason"] for k, v in failed.items()} == {
            "3": "details_not_json", "5": "details_bad_shape", "7": "bad_imdb_id"}
        assert "not JSON (text/html" in failed["3"]["detail"]
        assert "genres is ['Drama'], not a list of {id, name}" in failed["5"]["detail"]
        assert "imdb_id '../../escaped' is not tt + 7 or 8 digits" in failed["7"]["detail"]
        assert summary["failed_by_reason"] == {"bad_imdb_id": 1, "details_bad_shape": 1,
                                               "details_not_json": 1}
        assert summary["n_posters"] == 6
        # Nothing was written outside the output folder, whatever the answer said.
        assert not list(tmp_path.rglob("escaped*"))
        assert sorted(p.name for p in (tmp_path / "data" / "posters").iterdir()) == sorted(
            f"{m.imdb_id}.jpg" for i, m in enumerate(services.movies) if i not in (2, 4, 6))

        # A rerun asks TMDb again for the three failures only, and nothing else.
        before = len(services.log)
        again = _run(server, tmp_path)
        assert sorted(path for _, path in services.log[before:]) == [
            "/3/movie/5002", "/3/movie/5004", "/3/movie/5006"]
        assert again["failed"] == 3 and again["skipped"] == 6
    assert KEY not in (tmp_path / "report.json").read_text()


def test_a_bad_imdb_id_in_links_csv_fails_its_movie_only(tmp_path):
    movies = make_catalogue(3, seed=6)
    for m in movies:
        m.tmdb_genres = [(18, "Drama")]
    movies[1].imdb = 123_456_789  # tt123456789: 9 digits
    with ServerThread(FakeServices(movies, api_key=KEY)) as server:
        summary = _run(server, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(e["movielens_id"], e["reason"], e["detail"]) for e in report["excluded"]] == [
        ("2", "bad_imdb_id", "links.csv: imdb_id 'tt123456789' is not tt + 7 or 8 digits")]
    assert summary["n_posters"] == 2


# -- issue 24: a failed re-crawl loses nothing; hostile answers are let in nowhere -----------


def _drama_catalogue(n: int, seed: int, behaviours: dict[int, str] | None = None):
    movies = make_catalogue(n, seed=seed, behaviours=behaviours)
    for m in movies:  # every movie ends as a poster unless its behaviour says otherwise
        m.tmdb_genres = [(18, "Drama")]
    return movies


def _folder_state(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_recrawl_while_tmdb_is_down_fails_loudly_and_changes_nothing(tmp_path, capsys,
                                                                         monkeypatch):
    from postergenre.cli import main

    monkeypatch.setenv("POSTERGENRE_PROGRESS_SECONDS", "0")  # every tenth's line, however quick

    services = FakeServices(_drama_catalogue(20, seed=8), api_key=KEY)
    monkeypatch.setenv("TMDB_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)  # no params.yaml: only the flags apply
    with ServerThread(services) as server:
        flags = [*_cli_flags(server, tmp_path, "data"), "--tmdb-retries", "0",
                 "--tmdb-rate-limit", "100"]
        assert main(flags) == 0
        before = _folder_state(tmp_path / "data")
        assert sum(name.startswith("posters/") for name in before) == 20
        capsys.readouterr()

        services.down = True  # every request answers 503 from now on
        flags[flags.index("--tmdb-cache-dir") + 1] = str(tmp_path / "fresh-cache")
        code = main(flags)
    err = capsys.readouterr().err
    assert code == 2
    # Piped: the download's and the crawl's progress (a line per tenth, with the crawl's
    # counts), then one error line.
    *progress, line = err.strip().splitlines()
    assert progress and all(x.startswith(("download ", "ingest tmdb: ")) for x in progress)
    assert re.fullmatch(r"ingest tmdb: 20/20 movies \(100%, \d+\.\d s\) failed 20",
                        progress[-1]), progress
    assert line.startswith("postergenre ingest: error: 20 of 20 movies failed (http_503 20), "
                           f"more than 50%: {tmp_path / 'data'} is left as it was")
    assert _folder_state(tmp_path / "data") == before  # labels.csv and every poster
    report = json.loads((tmp_path / "data-report.json").read_text())
    assert report["failed"] == 20 and report["stale_posters_removed"] == 0


def test_a_movie_whose_request_fails_keeps_its_row_and_poster(tmp_path):
    services = FakeServices(_drama_catalogue(10, seed=9), api_key=KEY)
    with ServerThread(services) as server:
        _run(server, tmp_path, retries=0)
        before = _folder_state(tmp_path / "data")
        labels_before = read_labels(tmp_path / "data")
        # A fresh cache: every movie is asked again. Two fail this time; one is gone from
        # TMDb (an answer that settles it: its row and poster go).
        services.movies[3].behaviour = services.movies[6].behaviour = "500_always"
        gone = services.movies[8]
        gone.behaviour = "details_404"
        summary = _run(server, tmp_path, retries=0, cache_dir=str(tmp_path / "fresh"))
    after = _folder_state(tmp_path / "data")
    gone_poster = f"posters/{gone.imdb_id}.jpg"
    assert {k: v for k, v in after.items() if k != "labels.csv"} == \
        {k: v for k, v in before.items() if k not in ("labels.csv", gone_poster)}
    expected = labels_before[labels_before.imdb_id != gone.imdb_id].reset_index(drop=True)
    assert read_labels(tmp_path / "data").equals(expected)  # the failed two kept as were
    assert summary["failed_by_reason"] == {"http_500": 2}
    assert summary["kept_previous"] == 2 and summary["n_posters"] == 9
    assert summary["stale_posters_removed"] == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert sorted(e["movielens_id"] for e in report["excluded"]
                  if e.get("kept_previous_row")) == ["4", "7"]


def test_hostile_posters_are_refused_before_they_cost_memory_or_disk(tmp_path):
    """A pixel bomb, an answer over the byte cap (no length given) and a small gzip answer
    that inflates past it: each fails its movie, none is stored; the crawl goes on."""
    behaviours = {1: "pixel_bomb", 2: "oversized", 3: "gzip_bomb"}
    services = FakeServices(_drama_catalogue(8, seed=10, behaviours=behaviours), api_key=KEY)
    with ServerThread(services) as server:
        summary = _run(server, tmp_path, retries=0, timeout=30.0)
    report = json.loads((tmp_path / "report.json").read_text())
    reasons = {e["movielens_id"]: e["reason"] for e in report["excluded"]}
    assert reasons == {"2": "too_many_pixels", "3": "too_large (over 20000000 bytes)",
                       "4": "too_large (over 20000000 bytes)"}
    assert summary["n_posters"] == 5
    stored = sorted((tmp_path / "data").rglob("*"))
    assert all(p.stat().st_size < 100_000 for p in stored if p.is_file())
    assert not [p for p in stored if any(services.movies[i].imdb_id in p.name
                                         for i in behaviours)]


def test_redirect_hops_wait_for_the_rate_limiter_and_a_loop_fails_its_movie(tmp_path):
    hops_allowed = 5  # crawler.MAX_REDIRECTS (checked last)
    services = FakeServices(_drama_catalogue(6, seed=11, behaviours={1: "redirect_loop"}),
                            api_key=KEY)
    with ServerThread(services) as server:
        summary = _run(server, tmp_path, rate_limit=5.0, retries=2)
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(e["movielens_id"], e["reason"]) for e in report["excluded"]] == [
        ("2", f"too_many_redirects (over {hops_allowed})")]
    hops = [path for _, path in services.log if path.startswith("/loop/")]
    assert hops == [f"/loop/{n}" for n in range(1, hops_allowed + 1)]  # once, no retry
    # Every request of the crawl, hops included, within the limit as the server counts.
    arrivals = sorted(t for t, path in services.log if not path.startswith("/movielens/"))
    assert max(bisect.bisect_right(arrivals, t + 1.0) - i
               for i, t in enumerate(arrivals)) <= 5
    assert summary["http"]["requests"] == len(arrivals)
    from postergenre.sources.crawler import MAX_REDIRECTS

    assert hops_allowed == MAX_REDIRECTS


def test_an_imdb_id_of_non_ascii_digits_fails_its_movie(tmp_path):
    movies = _drama_catalogue(3, seed=12)
    movies[1].imdb = None  # TMDb's imdb_id is used: Arabic-Indic digits, \d's match
    movies[1].tmdb_imdb_id = "tt\u0661\u0662\u0663\u0664\u0665\u0666\u0667"
    with ServerThread(FakeServices(movies, api_key=KEY)) as server:
        summary = _run(server, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(e["movielens_id"], e["reason"]) for e in report["excluded"]] == [
        ("2", "bad_imdb_id")]
    assert summary["n_posters"] == 2
