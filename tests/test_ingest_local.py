"""`--source local`: a poster folder plus its labels CSV."""

from __future__ import annotations

import pytest

from postergenre.ingest import ingest
from postergenre.labels import read_labels
from tests.conftest import SHARED_DATA
from tests.servers.fake_services import poster_jpeg

HEADER = "imdb_id,tmdb_id,movielens_id,title,poster,genres,source_genres\n"


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
    summary = ingest("local", tmp_path / "data", local_dir=folder)
    labels = read_labels(tmp_path / "data")
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
])
def test_local_rejects_bad_tables_naming_the_problem(tmp_path, header, row, message):
    folder = _folder(tmp_path, [row], header)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        ingest("local", tmp_path / "data", local_dir=folder)
    assert not (tmp_path / "data").exists()  # nothing written


def test_local_lists_every_bad_row(tmp_path):
    folder = _folder(tmp_path, ["tt0000001,,,A,img/a.jpg,Drama,",
                                "tt0000001,,,A again,img/b.jpg,Drama,",
                                "tt0000002,,,B,img/gone.jpg,Westerns,"])
    with pytest.raises(ValueError) as err:
        ingest("local", tmp_path / "data", local_dir=folder)
    text = str(err.value)
    assert "duplicate imdb_id in 1 row(s): line 3 (tt0000001): also on line 2" in text
    assert "unknown genre in 1 row(s): line 4 (tt0000002): Westerns" in text
    assert "poster not found in 1 row(s): line 4 (tt0000002)" in text


def test_local_refuses_to_replace_a_folder_holding_other_data(tmp_path):
    folder = _folder(tmp_path, ["tt0000001,,,A,img/a.jpg,Drama,"])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        ingest("local", tmp_path / "data", local_dir=folder)


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED_DATA / "posters-movielens").is_dir(),
                    reason="../shared/data/posters-movielens is absent")
def test_local_ingests_the_shared_posters_movielens_set(tmp_path):
    source = SHARED_DATA / "posters-movielens"
    summary = ingest("local", tmp_path / "data", local_dir=source)
    original = read_labels(source)
    copied = read_labels(tmp_path / "data")
    assert summary["n_posters"] == len(original) == len(copied)
    assert list(copied.imdb_id) == list(original.imdb_id)
    assert list(copied.genres) == list(original.genres)
    first = copied.iloc[0]
    assert (tmp_path / "data" / first.poster).read_bytes() == \
        (source / original.iloc[0].poster).read_bytes()

