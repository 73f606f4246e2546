"""Split by movie, then augment the training split only: no leakage by construction."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from postergenre.configs import AugmentConfig, SplitConfig
from postergenre.data.augment import augment_and_shard, copies_per_movie, genre_factors
from postergenre.data.images import hflip, read_rgb, resize
from postergenre.data.shards import dataset, iter_records, labels_of, record_batches
from postergenre.data.split import SPLITS, assign_splits, split_dataset
from postergenre.genres import GENRES, encode_many
from postergenre.typed_config import from_mapping


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
    # Stratification balances genre instances, not rows: row counts land within 3 % of n.
    assert counts["train"] == pytest.approx(0.6 * len(every), abs=0.03 * len(every))
    assert counts["validation"] == pytest.approx(0.2 * len(every), abs=0.03 * len(every))


def test_split_is_deterministic_and_seeded(tiny_split, tmp_path):
    labels = tiny_split.parent / "validated" / "labels.csv"
    split_dataset(labels, tmp_path / "again", SplitConfig(seed=42))
    split_dataset(labels, tmp_path / "other", SplitConfig(seed=7))
    for name in SPLITS:
        assert (tmp_path / "again" / f"{name}.csv").read_bytes() == (
            tiny_split / f"{name}.csv").read_bytes()
    assert _ids(tmp_path / "other", "test") != _ids(tiny_split, "test")


def test_split_ignores_row_order(tiny_split, tmp_path):
    labels = pd.read_csv(tiny_split.parent / "validated" / "labels.csv", dtype=str)
    shuffled = tmp_path / "shuffled.csv"
    labels.sample(frac=1.0, random_state=1).to_csv(shuffled, index=False)
    split_dataset(shuffled, tmp_path / "out", SplitConfig(seed=42))
    assert _ids(tmp_path / "out", "test") == _ids(tiny_split, "test")


def test_split_rejects_bad_fractions(tiny_split, tmp_path):
    with pytest.raises(ValueError, match="room for a test split"):
        SplitConfig(train_fraction=0.7, validation_fraction=0.3)


def test_augmentation_touches_only_training(tiny_split, tiny_prepared):
    train = pd.read_csv(tiny_split / "train.csv", dtype=str, keep_default_na=False)
    extra = copies_per_movie(encode_many(train["genres"]), genre_factors(
        encode_many(train["genres"]), 3.0))
    expected_copies = dict(zip(train["imdb_id"], extra, strict=True))
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
        assert copies, "the tiny data set should have rare-genre training posters"
        per_origin = pd.Series([r["origin"] for r in copies]).value_counts().to_dict()
        assert per_origin == {k: v for k, v in expected_copies.items() if v}
        assert {r["augmentation"] for r in copies} <= {
            "hflip", "crop", "jitter", "hflip+crop", "hflip+jitter", "crop+jitter",
            "hflip+crop+jitter"}


def test_upsampling_is_inverse_to_frequency_and_capped():
    labels = np.zeros((100, 19), dtype=np.uint8)
    labels[:60, 6] = 1    # Drama: 60
    labels[:30, 3] = 1    # Comedy: 30
    labels[60:70, 18] = 1  # Western: 10
    labels[70:72, 17] = 1  # War: 2; median of present genres' counts: 20
    factors = genre_factors(labels, max_upsample=4.0)
    assert factors[6] == 1.0 and factors[3] == 1.0  # frequent genres are never shrunk
    assert factors[18] == pytest.approx(2.0) and factors[17] == 4.0  # 10 capped at 4
    assert factors[0] == 1.0  # no Action at all: nothing to copy
    extra = copies_per_movie(labels, factors)
    assert extra[0] == 0 and extra[65] == 1 and extra[70] == 3 and extra[80] == 0


def test_split_keeps_near_duplicate_groups_together_and_stratifies():
    rng = np.random.default_rng(0)
    labels = (rng.random((600, 19)) < rng.uniform(0.03, 0.4, 19)).astype(np.uint8)
    groups = np.array([f"g{i // 3}" if i < 90 else f"m{i}" for i in range(600)])
    split = assign_splits(labels, groups, (0.6, 0.2, 0.2), seed=1)
    for g in np.unique(groups[:90]):
        assert len(set(split[groups == g])) == 1
    # Stated tolerance: each split holds its share of every genre's positives within
    # 0.05 (genres with at least 20 positives).
    for index, share in enumerate((0.6, 0.2, 0.2)):
        for genre in range(19):
            total = labels[:, genre].sum()
            if total >= 20:
                got = labels[split == index, genre].sum() / total
                assert abs(got - share) <= 0.05, (GENRES[genre], index, got)


def test_stratified_proportions_on_demo_split(tiny_split):
    manifest = json.loads((tiny_split / "manifest.json").read_text())
    whole = manifest["genre_counts"]["all"]
    for name, share in zip(SPLITS, (0.6, 0.2, 0.2), strict=True):
        for genre, total in whole.items():
            if total >= 20:
                got = manifest["genre_counts"][name][genre] / total
                assert abs(got - share) <= 0.06, (name, genre, got)
    assert len(manifest["content_hash"]) == 64


def test_readers_agree(tiny_prepared):
    labels, ids = labels_of(tiny_prepared, "test")
    streamed = [v.decode() for b in dataset(tiny_prepared, "test", 16, with_ids=True)
                for v in b["imdb_id"].numpy()]
    assert streamed == ids
    frame = pd.concat(b.to_pandas() for b in record_batches(tiny_prepared, "test",
                                                           ["imdb_id", "split"]))
    assert len(frame) == len(ids) and {s[0] for s in frame["split"]} == {b"test"}
    images, _ = next(iter(dataset(tiny_prepared, "train", 8, shuffle=True, seed=1)))
    assert images.shape[1:] == (32, 32, 3) and images.dtype.name == "float32"


def test_flipped_copy_mirrors_its_original(tiny_data, tiny_split, tmp_path):
    augment_and_shard(tiny_data, tiny_split, tmp_path,
                      AugmentConfig(transforms=("hflip",), image_size=32))
    records = list(iter_records(tmp_path, "train"))
    copy = next(r for r in records if r["augmentation"] == "hflip")
    original = next(r for r in records
                    if r["imdb_id"] == copy["origin"] and r["augmentation"] == "none")
    assert np.array_equal(copy["labels"], original["labels"])
    size = original["image"].shape[0]
    source = resize(read_rgb(tiny_data / "posters" / f"{copy['origin']}.jpg"), size)
    # JPEG re-encoding moves pixels a little; the mirror image is much closer than the original.
    mirrored_error = np.abs(copy["image"].astype(int) - hflip(source).astype(int)).mean()
    plain_error = np.abs(copy["image"].astype(int) - source.astype(int)).mean()
    assert mirrored_error < 6 and mirrored_error < plain_error / 2


def test_manifest_counts_and_class_weights(tiny_prepared):
    from postergenre.data.augment import positive_class_weights

    manifest = json.loads((tiny_prepared / "manifest.json").read_text())
    labels, ids = labels_of(tiny_prepared, "train")
    assert len(ids) == manifest["counts"]["train"]["records"]
    assert labels.sum(axis=0).tolist() == list(manifest["genre_counts"]["train"].values())
    weights = np.array(manifest["class_weights"])
    assert weights.shape == (19,) and weights.min() >= 1.0 and weights.max() <= 10.0
    # The manifest's weights are those of the shards' training labels, whatever genres the
    # random demo data happened to draw...
    assert manifest["class_weights"] == positive_class_weights(
        labels, AugmentConfig().max_class_weight)
    # ...and a rare genre outweighs a common one, on crafted labels (always checked).
    drama, western = GENRES.index("Drama"), GENRES.index("Western")
    crafted = np.zeros((100, 19), dtype=np.uint8)
    crafted[:60, drama] = 1  # 60 Dramas
    crafted[60:65, western] = 1  # 5 Westerns
    crafted_weights = positive_class_weights(crafted, 10.0)
    assert crafted_weights[western] == 10.0  # 95 / 5 = 19, capped at 10
    assert crafted_weights[drama] == 1.0  # 40 / 60, floored at 1
    assert crafted_weights[western] > crafted_weights[drama]


def test_augment_rejects_unknown_transform(tiny_data, tiny_split, tmp_path):
    with pytest.raises(ValueError, match="augment.transforms: 'spin' is not one of"):
        from_mapping(AugmentConfig, {"transforms": ["hflip", "spin"]}, "augment")


def test_class_weights_file(tiny_prepared):
    weights = json.loads((tiny_prepared / "class_weights.json").read_text())
    assert weights["genres"] == list(GENRES) and len(weights["class_weights"]) == 19
    manifest = json.loads((tiny_prepared / "manifest.json").read_text())
    assert weights["class_weights"] == manifest["class_weights"]


def _given_split(tiny_split, tmp_path, mutate=None):
    """The tiny split written back as an imdb_id,split CSV (optionally changed)."""
    rows = [(i, s) for s in SPLITS for i in _ids(tiny_split, s)]
    table = pd.DataFrame(rows, columns=["imdb_id", "split"])
    if mutate:
        table = mutate(table)
    path = tmp_path / "given.csv"
    table.to_csv(path, index=False)
    return path


def test_a_given_split_is_used_as_given(tiny_split, tmp_path):
    labels = tiny_split.parent / "validated" / "labels.csv"

    def move_first_test_movie_to_train(table):
        first = table.index[table["split"] == "test"][0]
        table.loc[first, "split"] = "train"
        return table

    given = _given_split(tiny_split, tmp_path, move_first_test_movie_to_train)
    manifest = split_dataset(labels, tmp_path / "out", SplitConfig(assignment=str(given)))
    moved = pd.read_csv(given, dtype=str).set_index("imdb_id")["split"]
    for split in SPLITS:
        assert _ids(tmp_path / "out", split) == set(moved[moved == split].index)
    assert manifest["method"] == f"given: {given}"


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda t: t.iloc[1:], r"1 movie\(s\) of the labels have no split"),
    (lambda t: t.assign(split=t["split"].replace("validation", "train")),
     "no movie in validation"),
    (lambda t: t.assign(split=["holdout"] + list(t["split"][1:])),
     "line 2: split 'holdout'"),
    (lambda t: pd.concat([t, t.iloc[:1]]), "is assigned twice"),
    (lambda t: t.rename(columns={"split": "fold"}), "expected the columns imdb_id,split"),
])
def test_a_bad_given_split_is_named(tiny_split, tmp_path, mutate, message):
    labels = tiny_split.parent / "validated" / "labels.csv"
    given = _given_split(tiny_split, tmp_path, mutate)
    with pytest.raises(ValueError, match=message):
        split_dataset(labels, tmp_path / "out", SplitConfig(assignment=str(given)))
    assert not (tmp_path / "out").exists()


def test_a_given_split_that_separates_near_duplicates_warns_naming_them(
        tiny_split, tmp_path, caplog):
    labels_path = tiny_split.parent / "validated" / "labels.csv"
    labels = pd.read_csv(labels_path, dtype=str, keep_default_na=False)
    a, b = sorted(labels["imdb_id"])[:2]
    labels.loc[labels["imdb_id"].isin([a, b]), "duplicate_group"] = a
    labels.to_csv(tmp_path / "labels.csv", index=False)
    table = pd.DataFrame({"imdb_id": sorted(labels["imdb_id"]),
                          "split": (["train", "test"] + ["train", "validation", "test"] * 999)
                          [:len(labels)]})
    table.to_csv(tmp_path / "given.csv", index=False)
    split_dataset(tmp_path / "labels.csv", tmp_path / "out",
                  SplitConfig(assignment=str(tmp_path / "given.csv")))
    assert f"{a} (train), {b} (test)" in caplog.text


def test_a_damaged_or_cut_train_shard_is_named_before_training_reads_it(
        tiny_prepared, tmp_path, capsys, monkeypatch):
    """Issue 24: training read its shards only through tf.data, and a damaged one ended it
    with TensorFlow's DataLossError, naming no file; one cut at a record boundary read
    without error, only shorter."""
    import re
    import shutil

    from postergenre.cli import main
    from postergenre.data.shards import ShardReadError

    flipped, cut = tmp_path / "flipped", tmp_path / "cut"
    for folder in (flipped, cut):
        shutil.copytree(tiny_prepared, folder)
    shard = flipped / "train-00000.tfrecord"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x10
    shard.write_bytes(bytes(data))
    whole = (cut / "train-00000.tfrecord").read_bytes()
    first = 8 + 4 + int.from_bytes(whole[:8], "little") + 4  # one record: the file's first
    (cut / "train-00000.tfrecord").write_bytes(whole[:first])
    for prepared, problem in (
            (flipped, rf"{shard}: corrupted record at \d+"),
            (cut, r"split 'train': the shards hold \d+ record\(s\), manifest\.json says \d+")):
        with pytest.raises(ShardReadError, match=problem):
            for _ in dataset(prepared, "train", 16):  # an epoch's read
                pass

    monkeypatch.chdir(tmp_path)  # no params.yaml: the flags and defaults only
    assert main(["train-scratch", "--name", "cnn", "--prepared", str(flipped), "--out",
                 str(tmp_path / "model"), "--epochs", "1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert re.fullmatch(rf"postergenre train-scratch: error: split 'train': cannot read "
                        rf"shard\(s\): {re.escape(str(shard))}: corrupted record at \d+ "
                        r"\(rerun augment, or restore the prepared folder with `dvc "
                        r"checkout`\)", line), line
    assert not (tmp_path / "model").exists()


def test_augment_runs_without_loading_tensorflow(tiny_data, tiny_split, tmp_path):
    """Writing shards needs no TensorFlow (its import costs seconds and ~700 MiB): the CLI's
    augment, in a process of its own, never loads it."""
    script = ("import sys\nfrom postergenre.cli import main\n"
              f"code = main(['augment', '--data', {str(tiny_data)!r}, '--split', "
              f"{str(tiny_split)!r}, '--out', {str(tmp_path / 'prepared')!r}, "
              "'--image-size', '32'])\n"
              "print(code, 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    assert done.stdout.split()[-2:] == ["0", "False"], done.stdout + done.stderr
    assert (tmp_path / "prepared" / "manifest.json").is_file()
