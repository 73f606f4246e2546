"""The validate stage: a great-expectations suite over labels.csv and its posters."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from postergenre import validate
from postergenre.labels import LABEL_COLUMNS, read_labels
from postergenre.validate import DataValidationError, validate_dataset


def _write_poster(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((8, 8, 3), 127, dtype=np.uint8))


def _row(n: int, genres: str = "Drama|Comedy") -> dict[str, str]:
    imdb_id = f"tt{n:07d}"
    return {
        "imdb_id": imdb_id,
        "tmdb_id": str(1000 + n),
        "movielens_id": str(n),
        "title": f"Movie {n}",
        "poster": f"posters/{imdb_id}.jpg",
        "genres": genres,
        "source_genres": genres,
    }


def _make_dataset(
    root: Path, rows: list[dict[str, str]], skip_posters: tuple[str, ...] = ()
) -> Path:
    """Write labels.csv (line 2 = rows[0]) and an 8x8 JPEG per row unless skipped."""
    data = root / "data"
    data.mkdir(parents=True)
    pd.DataFrame(rows, columns=list(LABEL_COLUMNS)).to_csv(data / "labels.csv", index=False)
    for row in rows:
        if row["poster"] and row["poster"] not in skip_posters:
            _write_poster(data / row["poster"])
    return data


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _failed_rules(summary: dict) -> set[str]:
    return {e["name"] for e in summary["expectations"] if not e["success"]}


def test_clean_table_passes(tmp_path: Path) -> None:
    rows = [_row(n) for n in range(1, 6)]
    data = _make_dataset(tmp_path, rows)
    out = tmp_path / "out"

    summary = validate_dataset(data, out)

    assert summary == _summary(out)
    assert summary["success"] is True
    assert summary["suite"] == "postergenre_labels"
    assert summary["rows_in"] == summary["rows_kept"] == 5
    assert summary["rejects"] == {}
    assert {e["name"] for e in summary["expectations"]} == {
        "imdb_id_present",
        "imdb_id_unique",
        "genres_known",
        "has_genre",
        "poster_exists",
    }
    assert all(e["success"] and e["unexpected_count"] == 0 for e in summary["expectations"])
    pd.testing.assert_frame_equal(read_labels(out), read_labels(data))
    rejects = pd.read_csv(out / "rejects.csv", dtype=str)
    assert list(rejects.columns) == [*LABEL_COLUMNS, "reason"]
    assert rejects.empty


@pytest.mark.parametrize(
    ("change", "rule", "expected"),
    [
        (
            lambda rows: rows[5].update(genres="Drama|Sci Fi"),
            "genres_known",
            "labels.csv line 7 (tt0000006): unknown genre 'Sci Fi'",
        ),
        (
            lambda rows: rows[7].update(imdb_id="tt0000002"),
            "imdb_id_unique",
            "labels.csv lines 3, 9: duplicate imdb_id 'tt0000002'",
        ),
        (
            lambda rows: rows[2].update(genres="", source_genres=""),
            "has_genre",
            "labels.csv line 4 (tt0000003): no genre",
        ),
        (
            lambda rows: rows[1].update(imdb_id=""),
            "imdb_id_present",
            "labels.csv line 3: empty imdb_id",
        ),
    ],
    ids=["unknown_genre", "duplicate_id", "no_genre", "empty_id"],
)
def test_each_rule_rejects_its_row(tmp_path: Path, change, rule: str, expected: str) -> None:
    rows = [_row(n) for n in range(1, 11)]
    change(rows)
    data = _make_dataset(tmp_path, rows)
    out = tmp_path / "out"

    with pytest.raises(DataValidationError) as caught:
        validate_dataset(data, out)

    message = str(caught.value)
    assert str(data / "labels.csv") in message
    assert expected in message
    summary = _summary(out)
    assert summary["success"] is False
    assert _failed_rules(summary) == {rule}
    assert summary["rows_kept"] == 0
    assert not (out / "labels.csv").exists()


def test_missing_poster(tmp_path: Path) -> None:
    rows = [_row(n) for n in range(1, 6)]
    data = _make_dataset(tmp_path, rows, skip_posters=("posters/tt0000004.jpg",))
    out = tmp_path / "out"

    with pytest.raises(DataValidationError) as caught:
        validate_dataset(data, out)

    expected = "labels.csv line 5 (tt0000004): poster file not found: posters/tt0000004.jpg"
    assert expected in str(caught.value)
    summary = _summary(out)
    assert summary["success"] is False
    (poster,) = [e for e in summary["expectations"] if e["name"] == "poster_exists"]
    assert poster["unexpected_count"] == 1
    assert poster["offending_imdb_ids"] == ["tt0000004"]
    assert poster["offending_lines"] == [5]


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    rows = [_row(n) for n in range(1, 11)]
    rows[1]["genres"] = "Film-Noir"
    rows[3]["genres"] = ""
    rows[6]["imdb_id"] = "tt0000001"
    data = _make_dataset(tmp_path, rows, skip_posters=("posters/tt0000009.jpg",))
    out = tmp_path / "out"

    with pytest.raises(DataValidationError) as caught:
        validate_dataset(data, out)

    message = str(caught.value)
    assert "4 validation rules failed" in message
    assert "line 3 (tt0000002): unknown genre 'Film-Noir'" in message
    assert "line 5 (tt0000004): no genre" in message
    assert "lines 2, 8: duplicate imdb_id 'tt0000001'" in message
    assert "line 10 (tt0000009): poster file not found: posters/tt0000009.jpg" in message
    assert _failed_rules(_summary(out)) == {
        "genres_known",
        "has_genre",
        "imdb_id_unique",
        "poster_exists",
    }


def test_more_offenders_than_max_listed(tmp_path: Path) -> None:
    rows = [_row(n, genres="Drama|Noir") for n in range(1, 16)]
    data = _make_dataset(tmp_path, rows)
    out = tmp_path / "out"

    with pytest.raises(DataValidationError) as caught:
        validate_dataset(data, out, max_listed=3)

    message = str(caught.value)
    assert "line 4 (tt0000003): unknown genre 'Noir'" in message
    assert "tt0000004" not in message
    assert "... and 12 more" in message
    (known,) = [e for e in _summary(out)["expectations"] if e["name"] == "genres_known"]
    assert known["unexpected_count"] == 15
    assert known["offending_imdb_ids"] == ["tt0000001", "tt0000002", "tt0000003"]


def test_line_numbers_follow_multiline_titles(tmp_path: Path) -> None:
    rows = [_row(n) for n in range(1, 4)]
    rows[0]["title"] = "A title\nover two lines"
    rows[2]["genres"] = "Cartoon"
    data = _make_dataset(tmp_path, rows)

    with pytest.raises(DataValidationError, match=r"line 5 \(tt0000003\): unknown genre"):
        validate_dataset(data, tmp_path / "out")


def test_failure_removes_stale_outputs(tmp_path: Path) -> None:
    rows = [_row(n) for n in range(1, 4)]
    data = _make_dataset(tmp_path, rows)
    out = tmp_path / "out"
    validate_dataset(data, out)
    (data / "posters" / "tt0000001.jpg").unlink()

    with pytest.raises(DataValidationError):
        validate_dataset(data, out)

    assert not (out / "labels.csv").exists()
    assert not (out / "rejects.csv").exists()
    assert _summary(out)["success"] is False


def test_soft_rule_moves_rows_to_rejects(tmp_path: Path, monkeypatch) -> None:
    # No rule is soft yet; this pins the mechanism a later step relies on.
    soft = tuple(
        dataclasses.replace(rule, hard=False) if rule.name == "poster_exists" else rule
        for rule in validate.RULES
    )
    monkeypatch.setattr(validate, "RULES", soft)
    rows = [_row(n) for n in range(1, 5)]
    data = _make_dataset(tmp_path, rows, skip_posters=("posters/tt0000002.jpg",))
    out = tmp_path / "out"

    summary = validate_dataset(data, out)

    assert summary["success"] is True
    assert (summary["rows_in"], summary["rows_kept"]) == (4, 3)
    assert summary["rejects"] == {"poster_exists": 1}
    assert list(read_labels(out)["imdb_id"]) == ["tt0000001", "tt0000003", "tt0000004"]
    rejects = pd.read_csv(out / "rejects.csv", dtype=str)
    assert rejects.to_dict("records")[0]["imdb_id"] == "tt0000002"
    assert rejects.to_dict("records")[0]["reason"] == "poster_exists"


def test_missing_labels_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        validate_dataset(tmp_path / "data", tmp_path / "out")


def test_missing_column(tmp_path: Path) -> None:
    data = _make_dataset(tmp_path, [_row(1)])
    table = pd.read_csv(data / "labels.csv", dtype=str).drop(columns=["genres"])
    table.to_csv(data / "labels.csv", index=False)

    with pytest.raises(DataValidationError) as caught:
        validate_dataset(data, tmp_path / "out")

    assert str(data / "labels.csv") in str(caught.value)
    assert "genres" in str(caught.value)


def test_out_dir_must_differ_from_data_dir(tmp_path: Path) -> None:
    data = _make_dataset(tmp_path, [_row(1)])
    with pytest.raises(ValueError, match="out_dir"):
        validate_dataset(data, data)


def test_header_only_table(tmp_path: Path) -> None:
    # No rule asks for a minimum row count yet, so an empty table is valid (and must not crash).
    data = _make_dataset(tmp_path, [])
    summary = validate_dataset(data, tmp_path / "out")
    assert (summary["success"], summary["rows_in"], summary["rows_kept"]) == (True, 0, 0)
    assert list(read_labels(tmp_path / "out").columns) == list(LABEL_COLUMNS)
