"""The genre mapping table: known rows, and the doc page that shows it."""

from postergenre.sources import genre_mapping as gm
from tests.conftest import REPO_ROOT


def test_known_rows_of_each_source():
    assert gm.map_genres("tmdb", ["Science Fiction", "TV Movie", "Drama"]).genres == \
        ["Drama", "Sci-Fi"]
    ml = gm.map_genres("movielens", ["Children", "Film-Noir", "IMAX", "Musical"])
    assert ml.genres == ["Family", "Musical"] and ml.dropped == ["Film-Noir", "IMAX"]
    assert gm.map_genres("imdb", ["Biography", "History"]).genres == ["History"]
    assert gm.map_genres("movielens", ["(no genres listed)"]).genres == []


def test_unknown_names_are_kept_apart_not_silently_lost():
    out = gm.map_genres("tmdb", ["Action", "Space Opera"])
    assert out.genres == ["Action"] and out.unknown == ["Space Opera"]


def test_tmdb_genres_map_by_id_whatever_the_language():
    assert gm.tmdb_genre_names([{"id": 878, "name": "Science-fiction"},
                                {"id": 1, "name": "Neu"}]) == ["Science Fiction", "Neu"]


def test_label_sources_combine():
    assert gm.combine("tmdb", ["Action"], ["Drama"]) == ["Action"]
    assert gm.combine("movielens", ["Action"], ["Drama"]) == ["Drama"]
    assert gm.combine("union", ["Drama"], ["Action", "Drama"]) == ["Action", "Drama"]


def test_doc_page_shows_exactly_the_table():
    text = (REPO_ROOT / "docs" / "genre-mapping.md").read_text()
    rows = set()
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in gm.TABLES:
            rows.add((cells[0], cells[1], None if cells[2] == "dropped" else cells[2]))
    expected = {(src, name, target) for src, table in gm.TABLES.items()
                for name, target in table.items()}
    assert rows == expected
