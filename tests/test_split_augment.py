"""Split by movie, then augment the training split only: no leakage by construction."""

import json

import numpy as np
import pandas as pd
import pytest

from postergenre.augment import STUDY_MINORITY_GENRES, augment_and_shard
from postergenre.genres import parse_genres
from postergenre.images import hflip, read_rgb, resize
from postergenre.shards import iter_records, labels_of
from postergenre.split import SPLITS, split_dataset


def _ids(split_dir, name):
    return set(pd.read_csv(split_dir / f"{name}.csv", dtype=str)["imdb_id"])


def test_no_movie_in_two_splits_and_every_movie_somewhere(tiny_data, tiny_split):
    parts = {name: _ids(tiny_split, name) for name in SPLITS}
    assert not parts["train"] & parts["validation"]
    assert not parts["train"] & parts["test"]
    assert not parts["validation"] & parts["test"]
    every = set(pd.read_csv(tiny_data / "labels.csv", dtype=str)["imdb_id"])
    assert set().union(*parts.values()) == every
    counts = json.loads((tiny_split / "manifest.json").read_text())["counts"]
    assert counts["train"] == pytest.approx(0.6 * len(every), abs=1)
    assert counts["validation"] == pytest.approx(0.2 * len(every), abs=1)


def test_split_is_deterministic_and_seeded(tiny_split, tmp_path):
    labels = tiny_split.parent / "validated" / "labels.csv"
    split_dataset(labels, tmp_path / "again", seed=42)
    split_dataset(labels, tmp_path / "other", seed=7)
    for name in SPLITS:
        assert (tmp_path / "again" / f"{name}.csv").read_bytes() == (
            tiny_split / f"{name}.csv").read_bytes()
    assert _ids(tmp_path / "other", "test") != _ids(tiny_split, "test")


def test_split_ignores_row_order(tiny_split, tmp_path):
    labels = pd.read_csv(tiny_split.parent / "validated" / "labels.csv", dtype=str)
    shuffled = tmp_path / "shuffled.csv"
    labels.sample(frac=1.0, random_state=1).to_csv(shuffled, index=False)
    split_dataset(shuffled, tmp_path / "out", seed=42)
    assert _ids(tmp_path / "out", "test") == _ids(tiny_split, "test")


def test_split_rejects_bad_fractions(tiny_split, tmp_path):
    with pytest.raises(ValueError, match="room for a test split"):
        split_dataset(tiny_split / "train.csv", tmp_path, 0.7, 0.3)


def test_augmentation_touches_only_training(tiny_split, tiny_prepared):
    minority = set(STUDY_MINORITY_GENRES)
    for split in SPLITS:
        records = list(iter_records(tiny_prepared, split))
        movies = _ids(tiny_split, split)
        originals = [r for r in records if r["augmentation"] == "none"]
        copies = [r for r in records if r["augmentation"] != "none"]
        # Every movie of the split exactly once as itself, and no other movie.
        assert sorted(r["imdb_id"] for r in originals) == sorted(movies)
        assert {r["origin"] for r in records} <= movies
        assert all(r["split"] == split for r in records)
        if split != "train":
            assert copies == []
            continue
        table = pd.read_csv(tiny_split / "train.csv", dtype=str, keep_default_na=False)
        expected = {row.imdb_id for row in table.itertuples()
                    if minority.intersection(parse_genres(row.genres))}
        assert expected, "the tiny data set should have minority-genre training posters"
        assert {r["origin"] for r in copies} == expected
        assert all(r["augmentation"] == "hflip" for r in copies)


def test_flipped_copy_mirrors_its_original(tiny_data, tiny_prepared):
    records = list(iter_records(tiny_prepared, "train"))
    copy = next(r for r in records if r["augmentation"] == "hflip")
    original = next(r for r in records
                    if r["imdb_id"] == copy["origin"] and r["augmentation"] == "none")
    assert np.array_equal(copy["labels"], original["labels"])
    size = original["image"].shape[0]
    source = resize(read_rgb(tiny_data / "posters" / f"{copy['origin']}.jpg"), size)
    # JPEG re-encoding moves pixels a little; the mirror image is much closer than the original.
    mirrored_error = np.abs(copy["image"].astype(int) - hflip(source).astype(int)).mean()
    plain_error = np.abs(copy["image"].astype(int) - source.astype(int)).mean()
    assert mirrored_error < 4 and mirrored_error < plain_error


def test_manifest_counts_and_class_weights(tiny_prepared):
    manifest = json.loads((tiny_prepared / "manifest.json").read_text())
    labels, ids = labels_of(tiny_prepared, "train")
    assert len(ids) == manifest["counts"]["train"]["records"]
    assert labels.sum(axis=0).tolist() == list(manifest["genre_counts"]["train"].values())
    weights = np.array(manifest["class_weights"])
    assert weights.shape == (19,) and weights.min() >= 1.0 and weights.max() <= 10.0
    drama, western = 6, 18
    if labels[:, western].sum():
        assert weights[western] > weights[drama]


def test_augment_rejects_unknown_minority_genre(tiny_data, tiny_split, tmp_path):
    with pytest.raises(ValueError, match="'Spaghetti'"):
        augment_and_shard(tiny_data, tiny_split, tmp_path, ["Spaghetti"])
