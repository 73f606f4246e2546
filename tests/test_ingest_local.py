"""The local source: a poster folder plus its labels CSV."""

from __future__ import annotations

import json

import pytest

from postergenre.configs import IngestConfig, LocalSourceConfig
from postergenre.data.labels import read_labels
from postergenre.sources.ingest import ingest
from tests.conftest import SHARED_DATA
from tests.servers.fake_services import poster_jpeg

HEADER = "imdb_id,tmdb_id,movielens_id,title,poster,genres,source_genres\n"


def _local(folder, labels_csv="") -> IngestConfig:
    return IngestConfig(local=LocalSourceConfig(dir=str(folder), labels_csv=str(labels_csv)))


def _folder(tmp_path, rows: list[str], header: str = HEADER):
    folder = tmp_path / "dump"
    (folder / "img").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (folder / "img" / name).write_bytes(poster_jpeg(len(name)))
    (folder / "labels.csv").write_text(header + "".join(r + "\n" for r in rows))
    return folder


def test_local_copies_posters_and_labels(tmp_path):
    folder = _folder(tmp_path, ["tt0000001,1,2,A (1999),img/a.jpg,Sci-Fi|Action,x",
                                "tt0000002,,,B,img/b.jpg,Drama,"])
    summary = ingest("local", tmp_path / "data", _local(folder),
                     report_path=tmp_path / "report.json")
    labels = read_labels(tmp_path / "data")
    assert json.loads((tmp_path / "report.json").read_text()) == summary
    assert summary["n_posters"] == 2
    assert list(labels.poster) == ["posters/tt0000001.jpg", "posters/tt0000002.jpg"]
    assert list(labels.genres) == ["Action|Sci-Fi", "Drama"]  # vocabulary order
    assert list(labels.source_genres) == ["x", "Drama"]
    assert (tmp_path / "data" / "posters" / "tt0000001.jpg").read_bytes() == \
        (folder / "img" / "a.jpg").read_bytes()


@pytest.mark.parametrize(("header", "row", "message"), [
    ("imdb_id,poster\n", "tt0000001,img/a.jpg", r"labels\.csv: missing column\(s\) genres"),
    (HEADER, "tt0000001,,,A,img/a.jpg,Drama|Sci-Fy,", r"unknown genre.*line 2 "
     r"\(tt0000001\): Sci-Fy"),
    (HEADER, "tt0000003,,,C,img/nope.jpg,Drama,", r"poster not found.*line 2 "
     r"\(tt0000003\).*img/nope\.jpg"),
    # Issue 24: \d took any Unicode digit; a NUL ended the check with "embedded null byte".
    (HEADER, "tt\u0661\u0662\u0663\u0664\u0665\u0666\u0667,,,A,img/a.jpg,Drama,",
     r"bad imdb_id in 1 row\(s\): line 2"),
    (HEADER, "tt0000004,,,D,img/a\0.jpg,Drama,",
     r"NUL character in poster path in 1 row\(s\): line 2 \(tt0000004\): 'img/a\\x00\.jpg'"),
])
def test_local_rejects_bad_tables_naming_the_problem(tmp_path, header, row, message):
    folder = _folder(tmp_path, [row], header)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        ingest("local", tmp_path / "data", _local(folder))
    assert not (tmp_path / "data").exists()  # nothing written


def test_local_lists_every_bad_row(tmp_path):
    folder = _folder(tmp_path, ["tt0000001,,,A,img/a.jpg,Drama,",
                                "tt0000001,,,A again,img/b.jpg,Drama,",
                                "tt0000002,,,B,img/gone.jpg,Westerns,"])
    with pytest.raises(ValueError) as err:
        ingest("local", tmp_path / "data", _local(folder))
    text = str(err.value)
    assert "duplicate imdb_id in 1 row(s): line 3 (tt0000001): also on line 2" in text
    assert "unknown genre in 1 row(s): line 4 (tt0000002): Westerns" in text
    assert "poster not found in 1 row(s): line 4 (tt0000002)" in text


def test_local_reads_a_labels_csv_named_apart_relative_to_its_own_folder(tmp_path):
    folder = _folder(tmp_path, ["tt0000001,,,A,img/a.jpg,Drama,"])
    (folder / "labels.csv").rename(folder / "other.csv")
    summary = ingest("local", tmp_path / "data", _local(folder, folder / "other.csv"))
    assert summary["n_posters"] == 1 and summary["labels_csv"] == str(folder / "other.csv")
    assert list(read_labels(tmp_path / "data").poster) == ["posters/tt0000001.jpg"]


def test_local_without_a_folder_says_which_setting_to_set(tmp_path):
    with pytest.raises(ValueError, match=r"set ingest\.local\.dir"):
        ingest("local", tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_local_replaces_an_earlier_set_leaving_no_stale_poster_or_temp_folder(tmp_path):
    ingest("local", tmp_path / "data", _local(_folder(tmp_path, [
        "tt0000001,,,A,img/a.jpg,Drama,", "tt0000002,,,B,img/b.jpg,Comedy,"])))
    ingest("local", tmp_path / "data", _local(_folder(tmp_path / "again", [
        "tt0000003,,,C,img/b.jpg,War,"])))
    assert sorted(p.name for p in (tmp_path / "data" / "posters").iterdir()) == \
        ["tt0000003.jpg"]
    assert list(read_labels(tmp_path / "data").imdb_id) == ["tt0000003"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_unknown_source_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="unknown ingest source 'ftp'.*demo, tmdb, local, dvc"):
        ingest("ftp", tmp_path / "data")


def test_local_refuses_to_replace_a_folder_holding_other_data(tmp_path):
    folder = _folder(tmp_path, ["tt0000001,,,A,img/a.jpg,Drama,"])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        ingest("local", tmp_path / "data", _local(folder))


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED_DATA / "posters-movielens").is_dir(),
                    reason="../shared/data/posters-movielens is absent")
def test_local_ingests_the_shared_posters_movielens_set(tmp_path):
    source = SHARED_DATA / "posters-movielens"
    summary = ingest("local", tmp_path / "data", _local(source))
    original = read_labels(source)
    copied = read_labels(tmp_path / "data")
    assert summary["n_posters"] == len(original) == len(copied)
    assert list(copied.imdb_id) == list(original.imdb_id)
    assert list(copied.genres) == list(original.genres)
    first = copied.iloc[0]
    assert (tmp_path / "data" / first.poster).read_bytes() == \
        (source / original.iloc[0].poster).read_bytes()



# -- issue 13: poster paths stay inside the folder; empty and unreadable tables ----------


def _escape(kind: str, folder, tmp_path) -> str:
    """A poster cell that leads out of `folder` to tmp_path/secret.jpg, one way or other."""
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(poster_jpeg(7))
    if kind == "dotdot":
        return "../secret.jpg"
    if kind == "absolute":
        return str(secret)
    (folder / "img" / "link.jpg").symlink_to(secret)  # inside the folder, pointing out
    return "img/link.jpg"


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_local_refuses_a_poster_path_leading_out_of_the_folder(tmp_path, kind):
    folder = _folder(tmp_path, ["tt0000001,,,A,img/a.jpg,Drama,"])
    cell = _escape(kind, folder, tmp_path)
    (folder / "labels.csv").write_text(HEADER + "tt0000001,,,A,img/a.jpg,Drama,\n"
                                       f"tt0000002,,,B,{cell},Drama,\n")
    with pytest.raises(ValueError) as err:
        ingest("local", tmp_path / "data", _local(folder))
    text = str(err.value)
    assert f"{folder / 'labels.csv'}: poster path outside the local folder" in text
    assert f"line 3 (tt0000002): {cell}" in text
    assert not (tmp_path / "data").exists()  # nothing copied


def test_local_accepts_an_absolute_path_and_a_symlink_inside_the_folder(tmp_path):
    folder = _folder(tmp_path, [])
    (folder / "img" / "link.jpg").symlink_to(folder / "img" / "b.jpg")
    (folder / "labels.csv").write_text(HEADER + f"tt0000001,,,A,{folder}/img/a.jpg,Drama,\n"
                                       "tt0000002,,,B,img/link.jpg,Drama,\n")
    assert ingest("local", tmp_path / "data", _local(folder))["n_posters"] == 2


@pytest.mark.parametrize(("content", "words"), [
    (HEADER.encode(), r"no data rows \(only a header\)"),
    (b"", r"empty file \(0 bytes\)"),
    ((HEADER + "tt0000001,,,Am\xe9lie,img/a.jpg,Drama,\n").encode("latin-1"),
     r"line 2, byte 0xE9 is not UTF-8"),
])
def test_local_names_the_file_of_an_empty_or_latin1_table(tmp_path, content, words):
    folder = _folder(tmp_path, [])
    (folder / "labels.csv").write_bytes(content)
    with pytest.raises(ValueError, match=f"{folder / 'labels.csv'}: {words}"):
        ingest("local", tmp_path / "data", _local(folder))
    assert not (tmp_path / "data").exists()
