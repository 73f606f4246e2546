"""Tests of the synthetic demo data set: reproducibility, safe replacement, layout,
genre frequencies and learnability."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import average_precision_score

from postergenre import demo
from postergenre.demo import GENRE_FREQUENCIES, generate_demo
from postergenre.genres import GENRE_INDEX, GENRES, encode_many, parse_genres
from postergenre.labels import LABEL_COLUMNS, LABELS_FILE, POSTERS_DIR, read_labels

N_LARGE = 2000
N_TRAIN = 1500


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


@pytest.fixture(scope="module")
def large_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "data"
    return out, generate_demo(out, n_posters=N_LARGE, seed=1)


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path: Path) -> None:
    first = generate_demo(tmp_path / "a", n_posters=30, seed=3)
    second = generate_demo(tmp_path / "b", n_posters=30, seed=3)
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert list(files_a) == list(files_b)
    assert len(files_a) == 31  # labels.csv + 30 posters
    for name, data in files_a.items():
        assert data == files_b[name], name
    assert {k: v for k, v in first.items() if k != "out_dir"} == {
        k: v for k, v in second.items() if k != "out_dir"
    }
    # Regenerating in place (what `dvc repro` does) keeps every byte, hence the md5.
    generate_demo(tmp_path / "a", n_posters=30, seed=3)
    assert _files(tmp_path / "a") == files_a

    other = _files(Path(generate_demo(tmp_path / "c", n_posters=30, seed=4)["out_dir"]))
    assert list(other) == list(files_a)  # same ids and paths ...
    assert other[LABELS_FILE] != files_a[LABELS_FILE]  # ... other genres
    assert sum(other[name] != data for name, data in files_a.items()) >= 25  # other posters


def test_a_larger_set_extends_a_smaller_one(tmp_path: Path) -> None:
    generate_demo(tmp_path / "small", n_posters=5, seed=2)
    generate_demo(tmp_path / "big", n_posters=12, seed=2)
    small, big = _files(tmp_path / "small"), _files(tmp_path / "big")
    posters = [name for name in small if name.startswith(f"{POSTERS_DIR}/")]
    assert len(posters) == 5
    assert all(small[name] == big[name] for name in posters)


def test_regenerating_smaller_leaves_no_stale_poster(tmp_path: Path) -> None:
    out = tmp_path / "data"
    generate_demo(out, n_posters=20, seed=0)
    summary = generate_demo(out, n_posters=5, seed=0)
    posters = sorted(p.name for p in (out / POSTERS_DIR).iterdir())
    assert posters == [f"tt{9000000 + i:07d}.jpg" for i in range(5)]
    assert len(read_labels(out)) == 5
    assert sum(summary["genre_counts"].values()) >= 5
    assert _leftovers(out) == []


def test_a_failure_keeps_the_previous_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "data"
    generate_demo(out, n_posters=8, seed=0)
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
        generate_demo(out, n_posters=8, seed=5)
    assert _files(out) == before
    assert _leftovers(out) == []


def test_refuses_to_replace_a_folder_that_is_not_a_data_set(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        generate_demo(out, n_posters=3)
    assert (out / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(FileExistsError):
        generate_demo(a_file, n_posters=3)


def test_labels_table_and_posters(tmp_path: Path) -> None:
    width, height = 64, 80  # not square, to catch a swapped (width, height)
    summary = generate_demo(tmp_path / "data", n_posters=40, seed=7, width=width, height=height)
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
        generate_demo(tmp_path / "data", **kwargs)
    assert not (tmp_path / "data").exists()
