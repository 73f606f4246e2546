import numpy as np
import pytest

from postergenre.genres import (
    GENRES,
    UnknownGenreError,
    decode,
    encode,
    encode_many,
    join_genres,
    parse_genres,
)


def test_vocabulary_is_the_design_notes_order():
    assert GENRES == (
        "Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama",
        "Family", "Fantasy", "History", "Horror", "Music", "Musical", "Mystery", "Romance",
        "Sci-Fi", "Thriller", "War", "Western",
    )


def test_encode_decode_round_trip():
    vector = encode(["Western", "Action", "Sci-Fi"])
    assert vector.dtype == np.uint8 and vector.shape == (19,)
    assert np.flatnonzero(vector).tolist() == [0, 15, 18]
    assert decode(vector) == ["Action", "Sci-Fi", "Western"]


def test_decode_thresholds_scores():
    scores = np.full(19, 0.1)
    scores[6] = 0.7
    assert decode(scores, threshold=0.5) == ["Drama"]
    assert decode(scores, threshold=0.05) == list(GENRES)


def test_unknown_genre_is_named():
    with pytest.raises(UnknownGenreError, match="'Sci Fi'"):
        encode(["Sci Fi"])


def test_cells_parse_and_join_in_vocabulary_order():
    assert parse_genres("Drama| Comedy |") == ["Drama", "Comedy"]
    assert parse_genres("") == [] and parse_genres(float("nan")) == []
    assert join_genres(["Western", "Drama", "Action", "Drama"]) == "Action|Drama|Western"
    assert encode_many(["Drama", "Action|War"]).sum(axis=1).tolist() == [1, 2]


def test_decode_rejects_wrong_length():
    with pytest.raises(ValueError, match="19"):
        decode([1, 0])
