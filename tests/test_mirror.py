"""Test-time mirroring: chosen on validation alone, inside the model, so evaluate, `predict`,
the SavedModel and Grad-CAM all serve the same function."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from postergenre.data.images import encode_jpeg
from postergenre.data.records import PosterRecord
from postergenre.data.shards import MANIFEST_FILE, write_shards
from postergenre.evaluation.evaluate import predict_split
from postergenre.genres import GENRES
from postergenre.serving.gradcam import gradcam
from postergenre.training.models import unmirrored, with_mirror
from postergenre.training.outputs import float32_copy, load_model, served_model

SIZE = 32
DRAMA = GENRES.index("Drama")


def _half_mean(side: str):
    """A model scoring every genre by the brightness of one half of the poster."""
    inputs = keras.Input((SIZE, SIZE, 3))
    cut = ((0, 0), (0, SIZE // 2)) if side == "left" else ((0, 0), (SIZE // 2, 0))
    x = keras.layers.Cropping2D(cut)(inputs)
    x = keras.layers.Conv2D(1, 1, kernel_initializer="ones", name="look")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    # Sum of the channels' means, 0-765, centred and scaled into sigmoid's sloped part.
    out = keras.layers.Dense(19, activation="sigmoid",
                             kernel_initializer=keras.initializers.Constant(0.01),
                             bias_initializer=keras.initializers.Constant(-3.84))(x)
    return keras.Model(inputs, out, name=f"{side}_half")


@pytest.fixture(scope="module")
def drama_on_the_left(tmp_path_factory):
    """Validation shards where Drama (the only genre with positives) is a bright left
    half; the right half is a random grey, so looking left is right and mirroring blurs
    it, while a model looking right gains from the mirror."""
    out = tmp_path_factory.mktemp("mirror") / "prepared"
    rng = np.random.default_rng(0)
    records = []
    for i in range(60):
        drama = i % 2 == 0
        image = np.full((SIZE, SIZE, 3), rng.integers(0, 256), dtype=np.uint8)
        image[:, :SIZE // 2] = 220 if drama else 30
        labels = np.zeros(19, dtype=np.uint8)
        labels[DRAMA] = drama
        imdb_id = f"tt{i:07d}"
        records.append(PosterRecord(encode_jpeg(image), labels, imdb_id, "validation", imdb_id))
    names = write_shards(records, out, "validation", 64)
    (out / MANIFEST_FILE).write_text(json.dumps(
        {"image_size": SIZE, "shards": {"validation": names}}))
    return out


def test_auto_mirrors_only_where_validation_map_rises(drama_on_the_left):
    left, right = _half_mean("left"), _half_mean("right")
    kept, record = served_model(left, drama_on_the_left, "auto")
    assert kept is left and record["used"] is False
    assert record["validation_map"]["plain"] > record["validation_map"]["mirrored"]
    mirrored, record = served_model(right, drama_on_the_left, "auto")
    assert record["used"] is True
    assert record["validation_map"]["mirrored"] > record["validation_map"]["plain"]
    # The recorded figures are the split's: AP of Drama, the only genre with positives.
    scores = predict_split(mirrored, drama_on_the_left, "validation")
    from sklearn.metrics import average_precision_score

    labels = np.arange(60) % 2 == 0
    assert record["validation_map"]["mirrored"] == pytest.approx(
        average_precision_score(labels, scores[:, DRAMA]), abs=1e-6)
    for setting, used in (("always", True), ("never", False)):
        model, record = served_model(left, drama_on_the_left, setting)
        assert record == {"setting": setting, "used": used}
        assert (model is not left) == used


def test_a_mirrored_model_serves_the_average_everywhere(tmp_path):
    network = _half_mean("left")
    model = with_mirror(network)
    images = np.random.default_rng(1).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    expected = (network(images) + network(images[:, :, ::-1])) / 2
    np.testing.assert_allclose(model(images), expected, atol=1e-6)
    (tmp_path / "m").mkdir()
    model.save(tmp_path / "m" / "model.keras")
    loaded = load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded(images), expected, atol=1e-6)
    np.testing.assert_allclose(float32_copy(loaded)(images), expected, atol=1e-6)
    assert unmirrored(loaded).name == "left_half" and unmirrored(network) is network
    heat = gradcam(loaded, images, np.full(4, DRAMA))
    assert heat.shape == (4, SIZE, SIZE) and np.isfinite(heat).all()
    tf.debugging.assert_all_finite(tf.constant(heat), "heat")
