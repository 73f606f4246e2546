"""`batch_predict` on the DirectRunner: tfx-bsl RunInference over the SavedModel gives the
probabilities `predict` gives for the same posters; thresholds come from the registry."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from postergenre.cli import main
from postergenre.data.shards import PosterRecord, iter_records, shard_paths, to_example
from postergenre.evaluation.gate import BLESSED
from postergenre.genres import GENRES
from postergenre.serving.batch_predict import batch_predict, read_predictions, resolve_model
from postergenre.serving.predict import load_predictor, predict_posters
from postergenre.serving.registry import register
from tests.helpers import train_tiny


@pytest.fixture(scope="module")
def model_dir(tiny_prepared, tmp_path_factory):
    return train_tiny(tiny_prepared, tmp_path_factory.mktemp("batch") / "model")


def _test_images(prepared):
    """{imdb_id: JPEG bytes} of the test split, straight from the shards."""
    images = {}
    for path in shard_paths(prepared, "test"):
        for record in tf.data.TFRecordDataset(path):
            example = tf.train.Example.FromString(record.numpy())
            feature = example.features.feature
            images[feature["imdb_id"].bytes_list.value[0].decode()] = \
                feature["image"].bytes_list.value[0]
    return images


@pytest.mark.slow
def test_same_probabilities_as_predict(model_dir, tiny_data, tiny_prepared, tmp_path):
    summary = batch_predict(model_dir, tmp_path / "out", prepared_dir=tiny_prepared)
    table = read_predictions(tmp_path / "out")
    images = _test_images(tiny_prepared)
    assert summary["rows"] == len(table) == len(images) > 0 and summary["errors"] == 0
    assert summary["thresholds"] == "default 0.5"  # a bare model folder has none stored
    assert list(table.columns) == ["imdb_id", *GENRES, "genres"]
    assert sorted(table["imdb_id"]) == sorted(images)
    # The original poster files through `predict`, which prepares each as augment stored
    # it: the same pixels, so the same probabilities up to float32 rounding.
    results = predict_posters(load_predictor(model_dir),
                              [str(tiny_data / "posters" / f"{i}.jpg") for i in table["imdb_id"]])
    expected = np.stack([r.probabilities for r in results])
    assert table[list(GENRES)].to_numpy() == pytest.approx(expected, abs=1e-5)
    # Bit-for-bit the SavedModel's serving_default (what TF Serving answers) on the bytes.
    serving = tf.saved_model.load(str(model_dir / "saved_model")).signatures["serving_default"]
    jpegs = tf.constant([images[i] for i in table["imdb_id"]])
    served = serving(image_bytes=jpegs)["probabilities"].numpy()
    assert table[list(GENRES)].to_numpy() == pytest.approx(served, abs=1e-6)
    assert [list(g) for g in table["genres"]] == [
        [g for g, p in zip(GENRES, row, strict=True) if p >= 0.5] for row in served]


@pytest.mark.slow
def test_registry_thresholds_bad_record_and_old_model(model_dir, tiny_prepared, tmp_path):
    # A registry entry with per-genre thresholds, as the gate writes them.
    thresholds = {"global": 0.5, "per_genre": {g: 0.05 * (i % 19) for i, g in
                                                enumerate(GENRES)}}
    (tmp_path / "blessing.json").write_text(json.dumps(
        {"decision": BLESSED, "model": "scratch", "thresholds": thresholds, "metrics": {}}))
    # A model trained before `serve_examples` existed: no SavedModel endpoint to use.
    old_model = tmp_path / "old-model"
    shutil.copytree(model_dir, old_model)
    shutil.rmtree(old_model / "saved_model")
    registry = tmp_path / "registry"
    register(tmp_path / "blessing.json", {"scratch": old_model}, registry)
    # The catalogue: the test shards plus one shard holding an undecodable poster.
    shards = tmp_path / "shards"
    shards.mkdir()
    for path in shard_paths(tiny_prepared, "test"):
        shutil.copy(path, shards)
    with tf.io.TFRecordWriter(str(shards / "zz-bad.tfrecord")) as writer:
        writer.write(to_example(PosterRecord(b"not a jpeg", np.zeros(19), "tt0000001",
                                             "test", "tt0000001")))
    out = tmp_path / "out"
    code = main(["batch-predict", "--model", str(registry), "--shards",
                 str(shards / "*.tfrecord"), "--out", str(out)])
    assert code == 1  # one bad record: reported, the others scored
    table = read_predictions(out)
    n_good = sum(1 for _ in iter_records(tiny_prepared, "test"))
    assert len(table) == n_good
    errors = (out / "errors.csv").read_text().splitlines()
    assert len(errors) == 2 and "zz-bad.tfrecord" in errors[1] and "tt0000001" in errors[1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["thresholds"].endswith("thresholds.json")
    cut = np.array([thresholds["per_genre"][g] for g in GENRES])
    for _, row in table.iterrows():
        probabilities = row[list(GENRES)].to_numpy(dtype=np.float64)
        assert list(row["genres"]) == [g for g, on in zip(GENRES, probabilities >= cut,
                                                          strict=True) if on]
    # A re-run replaces the table rather than adding a second set of files.
    batch_predict(registry, out, shards=str(shards / "*.tfrecord"))
    assert len(read_predictions(out)) == n_good


def test_empty_registry_and_missing_shards_are_clear_errors(tmp_path):
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "latest.json").write_text("null")
    with pytest.raises(FileNotFoundError, match="no blessed model"):
        resolve_model(tmp_path / "registry")
    with pytest.raises(FileNotFoundError, match="neither a registry"):
        resolve_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="no TFRecord files match"):
        batch_predict(tmp_path, tmp_path / "out", shards=str(tmp_path / "*.tfrecord"))


@pytest.mark.slow
def test_batch_predict_reproduces_evaluates_numbers_for_the_blessed_model(
        model_dir, tiny_prepared, tmp_path):
    """One operating point: the thresholds evaluate scored with are the ones served."""
    from sklearn.metrics import f1_score

    from postergenre.configs import EvaluateConfig, GateConfig
    from postergenre.data.shards import labels_of
    from postergenre.evaluation.evaluate import evaluate_models
    from postergenre.evaluation.gate import gate

    work = tmp_path / "eval"
    evaluate_models(tiny_prepared, {"scratch": model_dir}, work,
                    EvaluateConfig(bootstrap_resamples=0, report_posters=0))
    # Bless the tiny model whatever it learned: this test is about what is served.
    anything = GateConfig(min_f1_micro_margin=-1, min_map_margin=-1,
                          max_hamming_loss_increase=1, genres_per_movie_band=100)
    assert gate(work, work, anything) == BLESSED
    register(work / "blessing.json", {"scratch": model_dir}, tmp_path / "registry")
    batch_predict(tmp_path / "registry", tmp_path / "out", prepared_dir=tiny_prepared)

    table = read_predictions(tmp_path / "out").set_index("imdb_id")
    y_test, ids = labels_of(tiny_prepared, "test")
    predicted = np.array([[g in set(table.loc[i, "genres"]) for g in GENRES] for i in ids])
    evaluated = json.loads((work / "metrics.json").read_text())["scratch"]
    assert f1_score(y_test, predicted, average="micro", zero_division=0) == pytest.approx(
        evaluated["f1_micro"], abs=1e-9)
    assert float((predicted != y_test.astype(bool)).mean()) == pytest.approx(
        evaluated["hamming_loss"], abs=1e-9)
    assert float(predicted.sum(axis=1).mean()) == pytest.approx(
        evaluated["genres_per_movie"], abs=1e-9)
