"""The validate stage: a great-expectations suite over labels.csv and its posters."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pandas as pd
import pytest

from postergenre.configs import ValidateConfig
from postergenre.data.labels import LABEL_COLUMNS, read_labels
from postergenre.validation.rules import RULES, resolve_severity
from postergenre.validation.suite import load_suite_config
from postergenre.validation.validate import DataValidationError, validate_dataset
from tests.helpers import (
    jpeg_bytes,
    label_row,
    make_dataset,
    poster_art,
    validate_config,
    write_poster,
)


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _failed_rules(summary: dict) -> set[str]:
    return {e["name"] for e in summary["expectations"] if not e["success"]}


def test_clean_table_passes(tmp_path: Path) -> None:
    rows = [label_row(n) for n in range(1, 6)]
    data = make_dataset(tmp_path, rows)
    out = tmp_path / "out"

    summary = validate_dataset(data, out, validate_config())

    assert summary == _summary(out)
    assert summary["success"] is True
    assert summary["suite"] == "postergenre_labels"
    assert summary["rows_in"] == summary["rows_kept"] == 5
    assert summary["rejects"] == {}
    assert [e["name"] for e in summary["expectations"]] == [rule.name for rule in RULES]
    assert summary["limits"] == {
        "min_genre_support": 0, "min_width": 32, "min_height": 32, "min_aspect": 1.0,
        "max_aspect": 2.0, "min_file_bytes": 1, "max_file_bytes": 20_000_000,
        "max_pixels": 40_000_000, "duplicate_distance": 4}
    assert all(e["success"] and e["unexpected_count"] == 0 for e in summary["expectations"])
    kept = read_labels(out)
    pd.testing.assert_frame_equal(kept[list(LABEL_COLUMNS)], read_labels(data))
    assert list(kept["duplicate_group"]) == list(kept["imdb_id"])
    assert kept["phash"].str.fullmatch("[0-9a-f]{16}").all()
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
    rows = [label_row(n) for n in range(1, 11)]
    change(rows)
    data = make_dataset(tmp_path, rows)
    out = tmp_path / "out"

    with pytest.raises(DataValidationError) as caught:
        validate_dataset(data, out, validate_config())

    message = str(caught.value)
    assert str(data / "labels.csv") in message
    assert expected in message
    summary = _summary(out)
    assert summary["success"] is False
    assert _failed_rules(summary) == {rule}
    assert summary["rows_kept"] == 0
    assert not (out / "labels.csv").exists()


def test_missing_poster_hard(tmp_path: Path) -> None:
    rows = [label_row(n) for n in range(1, 6)]
    data = make_dataset(tmp_path, rows, skip_posters=("posters/tt0000004.jpg",))
    out = tmp_path / "out"

    with pytest.raises(DataValidationError) as caught:
        validate_dataset(data, out, validate_config(max_reject_fraction=0.1))

    expected = "labels.csv line 5 (tt0000004): poster file not found: posters/tt0000004.jpg"
    assert expected in str(caught.value)
    assert "more than max_reject_fraction=0.1" in str(caught.value)
    summary = _summary(out)
    assert summary["success"] is False
    (poster,) = [e for e in summary["expectations"] if e["name"] == "poster_exists"]
    assert poster["unexpected_count"] == 1
    assert poster["offending_imdb_ids"] == ["tt0000004"]
    assert poster["offending_lines"] == [5]


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    rows = [label_row(n) for n in range(1, 11)]
    rows[1]["genres"] = "Film-Noir"
    rows[3]["genres"] = ""
    rows[6]["imdb_id"] = "tt0000001"
    data = make_dataset(tmp_path, rows, skip_posters=("posters/tt0000009.jpg",))
    out = tmp_path / "out"

    with pytest.raises(DataValidationError) as caught:
        validate_dataset(data, out, validate_config(hard=("poster_exists",)))

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
    rows = [label_row(n, genres="Drama|Noir") for n in range(1, 16)]
    data = make_dataset(tmp_path, rows)
    out = tmp_path / "out"

    with pytest.raises(DataValidationError) as caught:
        validate_dataset(data, out, validate_config(max_listed=3))

    message = str(caught.value)
    assert "line 4 (tt0000003): unknown genre 'Noir'" in message
    assert "tt0000004" not in message
    assert "... and 12 more" in message
    (known,) = [e for e in _summary(out)["expectations"] if e["name"] == "genres_known"]
    assert known["unexpected_count"] == 15
    assert known["offending_imdb_ids"] == ["tt0000001", "tt0000002", "tt0000003"]


def test_line_numbers_follow_multiline_titles(tmp_path: Path) -> None:
    rows = [label_row(n) for n in range(1, 4)]
    rows[0]["title"] = "A title\nover two lines"
    rows[2]["genres"] = "Cartoon"
    data = make_dataset(tmp_path, rows)

    with pytest.raises(DataValidationError, match=r"line 5 \(tt0000003\): unknown genre"):
        validate_dataset(data, tmp_path / "out", validate_config())


def test_failure_removes_stale_outputs(tmp_path: Path) -> None:
    rows = [label_row(n) for n in range(1, 4)]
    data = make_dataset(tmp_path, rows)
    out = tmp_path / "out"
    validate_dataset(data, out, validate_config())
    (data / "posters" / "tt0000001.jpg").unlink()

    with pytest.raises(DataValidationError):
        validate_dataset(data, out, validate_config(max_reject_fraction=0.0))

    assert not (out / "labels.csv").exists()
    assert not (out / "rejects.csv").exists()
    assert _summary(out)["success"] is False


def test_missing_labels_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        validate_dataset(tmp_path / "data", tmp_path / "out", validate_config())


def test_missing_column(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, [label_row(1)])
    table = pd.read_csv(data / "labels.csv", dtype=str).drop(columns=["genres"])  # required
    table.to_csv(data / "labels.csv", index=False)

    with pytest.raises(DataValidationError) as caught:
        validate_dataset(data, tmp_path / "out", validate_config())

    assert str(data / "labels.csv") in str(caught.value)
    assert "genres" in str(caught.value)


def test_out_dir_must_differ_from_data_dir(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, [label_row(1)])
    with pytest.raises(ValueError, match="out_dir"):
        validate_dataset(data, data, validate_config())


def test_header_only_table(tmp_path: Path) -> None:
    # Issue 13: an empty data set is a broken export, not a valid one; the file is named.
    data = make_dataset(tmp_path, [])
    with pytest.raises(DataValidationError,
                       match=rf"{data / 'labels.csv'}: no data rows \(only a header\)"):
        validate_dataset(data, tmp_path / "out", validate_config())
    assert not (tmp_path / "out" / "labels.csv").exists()


def _bomb_header() -> bytes:
    """A valid JPEG whose frame header claims 20000x30000 pixels (a decompression bomb)."""
    data = bytearray(jpeg_bytes(poster_art(99)))
    sof = data.index(b"\xff\xc0")  # baseline frame header: length(2) precision(1) H(2) W(2)
    data[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") + (20000).to_bytes(2, "big")
    return bytes(data)


# (rule, how to break the poster of row 3 (tt0000003, line 4), words the message must hold)
POSTER_CASES = [
    ("poster_exists", lambda p: p.unlink(), "poster file not found"),
    ("poster_file_size", lambda p: p.write_bytes(b""), "0 bytes"),
    ("poster_decodes", lambda p: p.write_text("not an image\n"),
     "not a JPEG, PNG, WebP or BMP file; not decoded"),
    ("poster_decodes", lambda p: p.write_bytes(p.read_bytes()[:-40]),
     "tt0000003.jpg: "),  # OpenCV refuses it, or the end-of-image marker check does
    ("poster_channels", lambda p: p.write_bytes(jpeg_bytes(poster_art(3)[:, :, 0])),
     "1 channel(s)"),
    ("poster_min_width", lambda p: p.write_bytes(jpeg_bytes(poster_art(3, 36, 24))), "24 px wide"),
    ("poster_pixels", lambda p: p.write_bytes(_bomb_header()), "20000x30000 pixels exceeds"),
    ("poster_aspect", lambda p: p.write_bytes(jpeg_bytes(poster_art(3, 48, 96))),
     "height/width 0.50"),
    # The same artwork, decoded and re-encoded: other bytes, the same picture.
    ("poster_near_duplicate", lambda p: p.write_bytes(jpeg_bytes(
        cv2.imread(str(p.with_name("tt0000001.jpg"))))),
     "is a near-duplicate of tt0000001 (line 2, Hamming distance"),
]


@pytest.mark.parametrize(("rule", "damage", "words"), POSTER_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(POSTER_CASES)])
def test_each_poster_rule_fires_hard_and_soft(tmp_path: Path, rule, damage, words) -> None:
    rows = [label_row(n) for n in range(1, 21)]
    data = make_dataset(tmp_path, rows)
    damage(data / "posters" / "tt0000003.jpg")

    # Hard: the stage stops and names the row.
    with pytest.raises(DataValidationError) as caught:
        validate_dataset(data, tmp_path / "hard", validate_config(hard=(rule,)))
    assert "labels.csv line 4 (tt0000003): " in str(caught.value)
    assert words in str(caught.value)
    failed = {e["name"] for e in _summary(tmp_path / "hard")["expectations"]
              if not e["success"]}
    assert failed == {rule}, "only the rule that explains the problem fires"

    # Soft: the row moves to rejects with its reason; rejects + kept = rows in.
    summary = validate_dataset(data, tmp_path / "soft",
                               validate_config(soft=(rule,), max_reject_fraction=0.1))
    assert summary["rejects"] == {rule: 1}
    assert summary["rows_kept"] + summary["rows_rejected"] == summary["rows_in"] == 20
    rejects = pd.read_csv(tmp_path / "soft" / "rejects.csv", dtype=str)
    assert rejects[["imdb_id", "reason"]].to_dict("records") == [
        {"imdb_id": "tt0000003", "reason": rule}]
    assert "tt0000003" not in set(read_labels(tmp_path / "soft")["imdb_id"])


def test_near_duplicates_are_kept_and_grouped_by_default(tmp_path: Path) -> None:
    rows = [label_row(n) for n in range(1, 11)]
    data = make_dataset(tmp_path, rows)
    copy = data / "posters" / "tt0000007.jpg"
    copy.write_bytes(jpeg_bytes(cv2.resize(cv2.imread(str(data / "posters" / "tt0000002.jpg")),
                                      (40, 60), interpolation=cv2.INTER_AREA)))
    summary = validate_dataset(data, tmp_path / "out", validate_config())
    assert summary["success"] and summary["rows_kept"] == 10
    assert summary["near_duplicate_groups"] == 1
    kept = read_labels(tmp_path / "out").set_index("imdb_id")
    assert kept.at["tt0000007", "duplicate_group"] == "tt0000002"
    assert (kept["duplicate_group"] != kept.index).sum() == 1


def test_genre_support_names_the_genre(tmp_path: Path) -> None:
    rows = [label_row(n, "Drama|Comedy" if n > 2 else "Western|Drama") for n in range(1, 8)]
    data = make_dataset(tmp_path, rows)
    with pytest.raises(DataValidationError) as caught:
        validate_dataset(data, tmp_path / "out",
                         validate_config(min_genre_support=3, max_listed=20))
    message = str(caught.value)
    assert "genre 'Western': 2 movie(s), fewer than min_genre_support=3" in message
    assert "genre 'Action': 0 movie(s)" in message
    assert "genre 'Drama'" not in message


def test_default_config_asks_for_genre_support(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, [label_row(n) for n in range(1, 7)])
    with pytest.raises(DataValidationError) as caught:
        validate_dataset(data, tmp_path / "out")
    assert "genre 'Drama'" not in str(caught.value)
    assert (f"genre 'Action': 0 movie(s), fewer than "
            f"min_genre_support={ValidateConfig().min_genre_support}") in str(caught.value)


def test_every_suite_rule_has_one_record_and_policy() -> None:
    suite_rules = {e["meta"]["rule"] for e in load_suite_config()["expectations"]}
    assert suite_rules == {rule.name for rule in RULES}
    assert len(RULES) == len({rule.name for rule in RULES})
    # The policy is declared once, in the records: the config moves nothing by default.
    defaults = ValidateConfig()
    assert defaults.soft_rules == defaults.warn_rules == defaults.hard_rules == ()
    assert resolve_severity(defaults) == {rule.name: rule.severity for rule in RULES}


@pytest.mark.parametrize("policy", ["soft_rules", "warn_rules", "hard_rules"])
def test_unknown_rule_in_policy(tmp_path: Path, policy: str) -> None:
    data = make_dataset(tmp_path, [label_row(1)])
    config = ValidateConfig(**{policy: ("no_such_rule",)})
    with pytest.raises(ValueError, match=f"{policy}: unknown rule 'no_such_rule'"):
        validate_dataset(data, tmp_path / "out", config)
    assert not (tmp_path / "out").exists()


def test_missing_optional_column_is_reported_once(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, [label_row(n) for n in range(1, 4)])
    pd.read_csv(data / "labels.csv", dtype=str).drop(columns=["tmdb_id"]).to_csv(
        data / "labels.csv", index=False)
    with pytest.raises(DataValidationError, match=r"missing column\(s\) 'tmdb_id'"):
        validate_dataset(data, tmp_path / "out", validate_config())
    assert [s["name"] for s in _summary(tmp_path / "out")["skipped"]] == ["tmdb_id_numeric"]


def test_metrics_and_data_docs(tmp_path: Path) -> None:
    from html.parser import HTMLParser

    rows = [label_row(n) for n in range(1, 31)]
    data = make_dataset(tmp_path, rows, skip_posters=("posters/tt0000005.jpg",))
    out = tmp_path / "out"
    validate_dataset(data, out, validate_config())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rows_in"] == 30 and metrics["rows_kept"] == 29
    assert metrics["rejects"] == {"poster_exists": 1} and metrics["flagged"]["poster_exists"] == 1

    html = (out / "data_docs.html").read_text()

    class Structure(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.open: list[str] = []
            self.seen: set[str] = set()
            self.text: list[str] = []

        def handle_starttag(self, tag, attrs) -> None:
            self.seen.add(tag)
            if tag not in {"meta", "link", "br", "img", "input", "hr", "col", "area", "base"}:
                self.open.append(tag)

        def handle_endtag(self, tag) -> None:
            if tag in self.open:
                while self.open.pop() != tag:
                    pass

        def handle_data(self, data) -> None:
            self.text.append(data)

    parser = Structure()
    parser.feed(html)
    parser.close()
    text = " ".join(parser.text)
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert html.rstrip().lower().endswith("</html>")
    assert parser.open == [], f"unclosed tags: {parser.open}"
    assert {"html", "head", "body", "table"} <= parser.seen
    assert "postergenre_labels" in text
    # Every expectation of the suite appears, and the failed one shows its unexpected count.
    for column in ("imdb_id", "unknown_genres", "poster_exists", "duplicate_of", "genre_Western"):
        assert column in text, column
    assert "unsuccessful" in text.lower() or "failed" in text.lower()


def test_landscape_artwork_is_kept_with_a_warning_by_default(tmp_path: Path) -> None:
    """About 1% of real TMDb posters are landscape artwork: a poster all the same."""
    rows = [label_row(n) for n in range(1, 21)]
    data = make_dataset(tmp_path, rows)
    (data / "posters" / "tt0000003.jpg").write_bytes(jpeg_bytes(poster_art(3, 48, 96)))
    summary = validate_dataset(data, tmp_path / "out", ValidateConfig(min_genre_support=0))
    assert summary["rows_kept"] == 20 and summary["rejects"] == {}
    (aspect,) = [e for e in summary["expectations"] if e["name"] == "poster_aspect"]
    assert aspect["severity"] == "warn" and not aspect["success"]


# -- issue 13: unreadable tables, paths out of the data folder, RGBA posters -------------


@pytest.mark.parametrize(("content", "words"), [
    (b"", r"empty file \(0 bytes\)"),
    ("imdb_id,poster,genres\ntt0000001,posters/tt0000001.jpg,Drama\n"
     "tt0000002,posters/caf\xe9.jpg,Drama\n".encode("latin-1"),
     r"line 3, byte 0xE9 is not UTF-8"),
])
def test_an_empty_or_latin1_table_is_named(tmp_path: Path, content: bytes, words: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "labels.csv").write_bytes(content)
    with pytest.raises(DataValidationError, match=rf"{data / 'labels.csv'}: {words}"):
        validate_dataset(data, tmp_path / "out", validate_config())


def test_a_poster_path_out_of_the_data_folder_is_never_read(tmp_path: Path) -> None:
    rows = [label_row(n) for n in range(1, 21)]
    outside = tmp_path / "elsewhere" / "tt0000099.jpg"  # a perfectly good poster...
    write_poster(outside)
    rows[2]["poster"] = "../elsewhere/tt0000099.jpg"  # ...but not in the data set
    rows[3]["poster"] = str(outside)
    data = make_dataset(tmp_path, rows)

    # Soft (the default): both rows are rejected as posters not in the data set.
    summary = validate_dataset(data, tmp_path / "soft", validate_config(max_reject_fraction=0.2))
    assert summary["rejects"] == {"poster_exists": 2}
    rejects = pd.read_csv(tmp_path / "soft" / "rejects.csv", dtype=str)
    assert list(rejects["imdb_id"]) == ["tt0000003", "tt0000004"]
    # Hard: the stage stops, naming the lines and the paths.
    with pytest.raises(DataValidationError) as caught:
        validate_dataset(data, tmp_path / "hard", validate_config(hard=("poster_exists",)))
    message = str(caught.value)
    assert "line 4 (tt0000003): poster file not found: ../elsewhere/tt0000099.jpg" in message
    assert f"line 5 (tt0000004): poster file not found: {outside}" in message


def test_the_data_folder_may_symlink_its_posters_folder(tmp_path: Path) -> None:
    # What DVC's symlink cache and the CLI tests do: the paths as written stay inside.
    store = make_dataset(tmp_path / "store", [label_row(n) for n in range(1, 4)])
    data = tmp_path / "data"
    data.mkdir()
    (data / "posters").symlink_to(store / "posters")
    (data / "labels.csv").write_bytes((store / "labels.csv").read_bytes())
    assert validate_dataset(data, tmp_path / "out", validate_config())["rows_kept"] == 3


def test_an_rgba_png_poster_is_accepted(tmp_path: Path) -> None:
    rows = [label_row(n) for n in range(1, 6)]
    rows[2]["poster"] = "posters/tt0000003.png"
    data = make_dataset(tmp_path, rows, skip_posters=("posters/tt0000003.png",))
    rgba = cv2.cvtColor(poster_art(3), cv2.COLOR_BGR2BGRA)
    rgba[:10, :, 3] = 0  # partly transparent
    assert cv2.imwrite(str(data / "posters" / "tt0000003.png"), rgba)
    summary = validate_dataset(data, tmp_path / "out", validate_config(hard=("poster_channels",)))
    assert summary["rows_kept"] == 5
    kept = read_labels(tmp_path / "out").set_index("imdb_id")
    assert len(kept.loc["tt0000003", "phash"]) == 16


def test_ids_are_ascii_digits_only(tmp_path: Path) -> None:
    """Issue 24: the suite's `\\d` took any Unicode digit (Arabic-Indic ones here)."""
    rows = [label_row(n) for n in range(1, 21)]
    rows[2]["imdb_id"] = "tt\u0661\u0662\u0663\u0664\u0665\u0666\u0667"
    rows[3]["tmdb_id"] = "\u0661\u0662"
    rows[4]["movielens_id"] = "\uff17"  # a full-width 7
    data = make_dataset(tmp_path, rows)
    with pytest.raises(DataValidationError):
        validate_dataset(data, tmp_path / "out", validate_config())
    failed = {e["name"] for e in _summary(tmp_path / "out")["expectations"]
              if not e["success"]}
    assert failed == {"imdb_id_format", "tmdb_id_numeric", "movielens_id_numeric"}
