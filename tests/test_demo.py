"""Tests of the synthetic demo data set: reproducibility (in one process, and the same bytes
as docs/demo-data-md5.txt under other CPU-dispatch and thread settings), safe replacement,
layout, genre frequencies and learnability."""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import average_precision_score

from postergenre.configs import DemoSourceConfig
from postergenre.data.labels import LABEL_COLUMNS, LABELS_FILE, POSTERS_DIR, read_labels
from postergenre.genres import GENRE_INDEX, GENRES, encode_many, parse_genres
from postergenre.sources import demo
from postergenre.sources.demo import GENRE_FREQUENCIES, generate_demo
from tests.conftest import REPO_ROOT

N_LARGE = 2000
N_TRAIN = 1500
# md5 of every file of the default set (DemoSourceConfig(): 1500 posters, seed 0, 96x144),
# the bytes data.dvc records.
MANIFEST = REPO_ROOT / "docs" / "demo-data-md5.txt"


def _files(root: Path) -> dict[str, bytes]:
    """Every file under `root`, by relative path, with its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _leftovers(out: Path) -> list[str]:
    """Temporary siblings a generation may have left next to `out`."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def _md5s(root: Path) -> dict[str, str]:
    """md5 of every file under `root`, by relative path."""
    return {name: hashlib.md5(data).hexdigest() for name, data in _files(root).items()}


def _read_manifest() -> dict[str, str]:
    """docs/demo-data-md5.txt (`md5  relative/path` lines, # comments) as {path: md5}."""
    entries = {}
    for line in MANIFEST.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            md5, name = line.split(maxsplit=1)
            entries[name] = md5
    return entries


def _mismatches(got: dict[str, str], expected: dict[str, str]) -> list[str]:
    """The files whose md5 differs from the manifest's, or that are missing or extra."""
    problems = []
    for name in sorted(set(got) | set(expected)):
        if name not in got:
            problems.append(f"{name}: missing")
        elif name not in expected:
            problems.append(f"{name}: not in the manifest")
        elif got[name] != expected[name]:
            problems.append(f"{name}: md5 {got[name]}, manifest {expected[name]}")
    return problems


def _report(problems: list[str], setting: str) -> str:
    shown = "\n  ".join(problems[:25])
    more = f"\n  ... and {len(problems) - 25} more" if len(problems) > 25 else ""
    return (f"{len(problems)} file(s) differ from {MANIFEST.name} under {setting}:\n  "
            f"{shown}{more}")


@pytest.fixture(scope="module")
def large_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "data"
    return out, generate_demo(out, DemoSourceConfig(n_posters=N_LARGE, seed=1))


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path: Path) -> None:
    first = generate_demo(tmp_path / "a", DemoSourceConfig(n_posters=30, seed=3))
    second = generate_demo(tmp_path / "b", DemoSourceConfig(n_posters=30, seed=3))
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert list(files_a) == list(files_b)
    assert len(files_a) == 31  # labels.csv + 30 posters
    for name, data in files_a.items():
        assert data == files_b[name], name
    assert {k: v for k, v in first.items() if k != "out_dir"} == {
        k: v for k, v in second.items() if k != "out_dir"
    }
    # Regenerating in place (what `dvc repro` does) keeps every byte, hence the md5.
    generate_demo(tmp_path / "a", DemoSourceConfig(n_posters=30, seed=3))
    assert _files(tmp_path / "a") == files_a

    summary = generate_demo(tmp_path / "c", DemoSourceConfig(n_posters=30, seed=4))
    other = _files(Path(summary["out_dir"]))
    assert list(other) == list(files_a)  # same ids and paths ...
    assert other[LABELS_FILE] != files_a[LABELS_FILE]  # ... other genres
    assert sum(other[name] != data for name, data in files_a.items()) >= 25  # other posters


@pytest.fixture
def opencv_settings():
    """Restores OpenCV's global thread and optimisation settings after a test."""
    threads, optimized, ipp = cv2.getNumThreads(), cv2.useOptimized(), cv2.ipp.useIPP()
    yield
    cv2.setNumThreads(threads)
    cv2.setUseOptimized(optimized)
    cv2.ipp.setUseIPP(ipp)


def test_first_posters_match_the_manifest_whatever_opencv_settings(
    tmp_path: Path, opencv_settings: None
) -> None:
    """The first posters of the default set (poster i depends only on seed, i and size) are
    the manifest's bytes, generated twice in this process: once with OpenCV's defaults, once
    with one thread, no SIMD dispatch and no IPP (which changed posters 37 and 38 when the
    posters were drawn with OpenCV's float kernels)."""
    n = 40
    config = DemoSourceConfig(n_posters=n)  # the default seed and size
    generate_demo(tmp_path / "a", config)
    cv2.setNumThreads(1)
    cv2.setUseOptimized(False)
    cv2.ipp.setUseIPP(False)
    generate_demo(tmp_path / "b", config)
    first, second = _md5s(tmp_path / "a"), _md5s(tmp_path / "b")
    assert first == second, _mismatches(second, first)
    manifest = _read_manifest()
    posters = {name: md5 for name, md5 in first.items() if name.startswith(f"{POSTERS_DIR}/")}
    assert len(posters) == n
    problems = _mismatches(posters, {name: manifest[name] for name in posters})
    assert not problems, _report(problems, "this machine's defaults")


# Generate the default set in a fresh interpreter with these environment variables, after
# these in-process OpenCV calls; every file must match the manifest.
_GENERATE = """
import sys
import cv2
threads, optimized = int(sys.argv[2]), sys.argv[3] == "1"
if threads:
    cv2.setNumThreads(threads)
cv2.setUseOptimized(optimized)
from postergenre.configs import DemoSourceConfig
from postergenre.sources.demo import generate_demo
generate_demo(sys.argv[1], DemoSourceConfig())
"""


def _dispatched_features() -> tuple[str, str]:
    """What OpenCV and numpy dispatch at run time beyond their baseline, in the spelling of
    OPENCV_CPU_DISABLE and NPY_DISABLE_CPU_FEATURES (disabling a baseline feature is an
    error for numpy; one this CPU lacks is only a warning)."""
    opencv = [f.strip("*?") for f in cv2.getCPUFeaturesLine().split() if f.startswith("*")]
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__ as numpy_features
    except ImportError:  # another numpy layout: leave numpy's dispatch alone
        numpy_features = []
    return ",".join(opencv), " ".join(numpy_features)


def _no_simd_env() -> dict[str, str]:
    opencv, numpy_features = _dispatched_features()
    return {"OPENCV_CPU_DISABLE": opencv, "NPY_DISABLE_CPU_FEATURES": numpy_features,
            "OPENCV_IPP": "disabled"}


_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "OPENCV_FOR_THREADS_NUM": "1"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("setting", "env", "threads", "optimized"),
    [
        ("defaults", lambda: {}, 0, True),
        ("one thread", lambda: _ONE_THREAD, 1, True),
        # IPP's SSE4.2 code: the float bicubic resize the old drawing used gave other bytes.
        ("IPP sse42, 8 OpenCV threads", lambda: {"OPENCV_IPP": "sse42"}, 8, True),
        ("no SIMD dispatch, no IPP, unoptimised OpenCV", _no_simd_env, 0, False),
    ],
    ids=["defaults", "one-thread", "ipp-sse42", "no-simd"],
)
def test_default_set_matches_the_manifest_under_cpu_and_thread_settings(
    tmp_path: Path, setting: str, env, threads: int, optimized: bool
) -> None:
    """data.dvc must be the same on every machine: the default set, regenerated in a fresh
    process under other CPU-dispatch and thread settings, is byte for byte the manifest."""
    out = tmp_path / "data"
    extra = env()
    result = subprocess.run(
        [sys.executable, "-c", _GENERATE, str(out), str(threads), "1" if optimized else "0"],
        env={**os.environ, "TQDM_DISABLE": "1", **extra},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    problems = _mismatches(_md5s(out), _read_manifest())
    assert not problems, _report(problems, f"{setting} {extra}")


def test_a_larger_set_extends_a_smaller_one(tmp_path: Path) -> None:
    generate_demo(tmp_path / "small", DemoSourceConfig(n_posters=5, seed=2))
    generate_demo(tmp_path / "big", DemoSourceConfig(n_posters=12, seed=2))
    small, big = _files(tmp_path / "small"), _files(tmp_path / "big")
    posters = [name for name in small if name.startswith(f"{POSTERS_DIR}/")]
    assert len(posters) == 5
    assert all(small[name] == big[name] for name in posters)


def test_regenerating_smaller_leaves_no_stale_poster(tmp_path: Path) -> None:
    out = tmp_path / "data"
    generate_demo(out, DemoSourceConfig(n_posters=20, seed=0))
    summary = generate_demo(out, DemoSourceConfig(n_posters=5, seed=0))
    posters = sorted(p.name for p in (out / POSTERS_DIR).iterdir())
    assert posters == [f"tt{9000000 + i:07d}.jpg" for i in range(5)]
    assert len(read_labels(out)) == 5
    assert sum(summary["genre_counts"].values()) >= 5
    assert _leftovers(out) == []


def test_a_failure_keeps_the_previous_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "data"
    generate_demo(out, DemoSourceConfig(n_posters=8, seed=0))
    before = _files(out)
    real_draw = demo._draw_poster
    calls = {"n": 0}

    def failing_draw(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("simulated crash")
        return real_draw(*args, **kwargs)

    monkeypatch.setattr(demo, "_draw_poster", failing_draw)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate_demo(out, DemoSourceConfig(n_posters=8, seed=5))
    assert _files(out) == before
    assert _leftovers(out) == []


def test_refuses_to_replace_a_folder_that_is_not_a_data_set(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        generate_demo(out, DemoSourceConfig(n_posters=3))
    assert (out / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(FileExistsError):
        generate_demo(a_file, DemoSourceConfig(n_posters=3))


def test_labels_table_and_posters(tmp_path: Path) -> None:
    width, height = 64, 80  # not square, to catch a swapped (width, height)
    config = DemoSourceConfig(n_posters=40, seed=7, width=width, height=height)
    summary = generate_demo(tmp_path / "data", config)
    out = Path(summary["out_dir"])
    labels = read_labels(out)
    assert tuple(labels.columns) == LABEL_COLUMNS
    assert len(labels) == 40
    assert labels["imdb_id"].is_unique
    assert all(re.fullmatch(r"tt\d{7}", i) for i in labels["imdb_id"])
    assert (labels["tmdb_id"] == "").all() and (labels["movielens_id"] == "").all()
    assert (labels["source_genres"] == labels["genres"]).all()
    assert labels["title"].iloc[0] == "Demo poster 0001"
    for row in labels.itertuples():
        assert row.poster == f"{POSTERS_DIR}/{row.imdb_id}.jpg"
        image = cv2.imread(str(out / row.poster), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (height, width, 3)
        names = parse_genres(row.genres)
        assert names and all(name in GENRE_INDEX for name in names)
        assert row.genres == "|".join(sorted(names, key=GENRE_INDEX.__getitem__))
    counts = encode_many(labels["genres"]).sum(axis=0)
    assert summary["genre_counts"] == {g: int(c) for g, c in zip(GENRES, counts, strict=True)}
    assert summary["n_posters"] == 40 and summary["seed"] == 7
    assert summary["size"] == {"width": width, "height": height}


def test_frequency_table_covers_the_vocabulary() -> None:
    assert set(GENRE_FREQUENCIES) == set(GENRES)
    assert all(0 < p < 1 for p in GENRE_FREQUENCIES.values())


def test_every_genre_motif_draws_a_distinct_shape_at_its_place() -> None:
    """Each genre's drawing function (demo._MOTIFS) covers pixels near the given centre (the
    Documentary grid: across the whole poster), and no two motifs draw the same mask."""
    width, height, r = 96, 144, 12  # pixels; the drawing takes units of 1/_UNIT px
    unit = demo._UNIT
    masks = {}
    for genre, (_, kind, _) in demo._SIGNATURES.items():
        mask = demo._motif_mask(kind, 48 * unit, 72 * unit, r * unit, 11,
                                np.random.default_rng(0), width, height)
        assert mask.shape == (height, width) and mask.dtype == np.uint8, genre
        ys, xs = np.nonzero(mask)
        assert xs.size >= 20, genre
        assert (mask == 255).sum() >= 10, genre  # solid inside, anti-aliased at the edges
        if kind == "grid":
            assert xs.min() < 0.25 * width and xs.max() > 0.75 * width, genre
            assert ys.min() < 0.25 * height and ys.max() > 0.75 * height, genre
        else:  # within the texture box (half-size 1.6 r x 0.9 r) or 1.6 r of the centre
            assert np.abs(xs + 0.5 - 48).max() <= 1.6 * r + 2, genre
            assert np.abs(ys + 0.5 - 72).max() <= 1.6 * r + 2, genre
        masks[kind] = mask.tobytes()
    assert len(set(masks.values())) == len(demo._SIGNATURES)


def test_trig_table_is_the_same_with_any_libm() -> None:
    """The drawing's only float step is the integer trig table built from math.cos at import:
    no entry is within 1e-6 of a rounding tie, so a libm a few ulp off gives the same table."""
    scaled = [math.cos(math.radians(k)) * (1 << demo._TRIG_BITS) for k in range(360)]
    assert min(abs(abs(v - math.floor(v)) - 0.5) for v in scaled) > 1e-6
    assert [round(v) for v in scaled] == demo._COS.tolist()
    assert demo._cos(0) == demo._sin(90) == 1 << demo._TRIG_BITS


def test_genre_frequencies_are_unbalanced_like_real_ones(large_set: tuple[Path, dict]) -> None:
    out, summary = large_set
    share = {g: c / N_LARGE for g, c in summary["genre_counts"].items()}
    assert 0.40 <= share["Drama"] <= 0.60
    assert 0.005 <= share["Western"] <= 0.03
    assert all(c >= 1 for c in summary["genre_counts"].values()), summary["genre_counts"]
    assert share["Drama"] > share["Comedy"] > share["Thriller"] > share["Western"]


def test_genres_are_learnable_from_small_posters(large_set: tuple[Path, dict]) -> None:
    """A linear model on 16x16 thumbnails must find every genre's signature; the null model's
    average precision is the prevalence, so beating it by a margin means there is signal."""
    out, _ = large_set
    labels = read_labels(out)
    y = encode_many(labels["genres"])
    x = np.stack(
        [
            cv2.resize(cv2.imread(str(out / p)), (16, 16), interpolation=cv2.INTER_AREA).ravel()
            for p in labels["poster"]
        ]
    ).astype(np.float64)
    mean, std = x[:N_TRAIN].mean(axis=0), x[:N_TRAIN].std(axis=0) + 1e-6
    x = (x - mean) / std
    scores = Ridge(alpha=100.0).fit(x[:N_TRAIN], y[:N_TRAIN]).predict(x[N_TRAIN:])
    y_test = y[N_TRAIN:]

    present = [g for g in range(len(GENRES)) if y_test[:, g].any()]
    ap = {g: average_precision_score(y_test[:, g], scores[:, g]) for g in present}
    prevalence = {g: y_test[:, g].mean() for g in present}
    m_ap, m_prev = np.mean(list(ap.values())), np.mean(list(prevalence.values()))
    assert m_ap > m_prev + 0.15, (m_ap, m_prev)

    # Multi-genre posters carry each of their genres: on the posters with 2+ genres, each
    # common genre is still found (AP closes at least half the gap between null and perfect).
    multi = y_test.sum(axis=1) >= 2
    assert multi.sum() >= 100
    for name in ("Drama", "Comedy", "Thriller", "Romance", "Action"):
        g = GENRE_INDEX[name]
        prev = y_test[multi, g].mean()
        ap_multi = average_precision_score(y_test[multi, g], scores[multi, g])
        assert ap_multi > prev + 0.5 * (1 - prev), (name, ap_multi, prev)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_posters": 0},
        {"n_posters": -3},
        {"n_posters": 2.5},
        {"width": 31},
        {"height": 16},
        {"seed": -1},
        {"seed": "0"},
    ],
)
def test_bad_arguments_raise_value_error(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        generate_demo(tmp_path / "data", DemoSourceConfig(**kwargs))
    assert not (tmp_path / "data").exists()
