"""The linear probe on several backbones' features side by side, the set chosen on
validation: trained on tiny data with random weights, saved, loaded, scored by evaluate
and served by predict."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from postergenre.configs import LinearProbeConfig, model_spec
from postergenre.training.linear_probe import backbone_sets
from tests.conftest import TINY_IMAGE
from tests.helpers import assert_probe_scores_are_sklearns

BACKBONES = ["efficientnet_lite0", "efficientnet_lite1"]  # 224 and 240 px


@pytest.fixture(scope="module")
def probe_dir(tiny_prepared, tmp_path_factory):
    from postergenre.training.train import train_model

    spec = model_spec("probe", {"kind": "linear_probe", "backbones": BACKBONES,
                                "choose_backbones": True, "weights": "none", "C": 0.5,
                                "batch_size": 16})
    out = tmp_path_factory.mktemp("probe") / "probe"
    train_model(tiny_prepared, out, spec)
    return out


def test_the_backbone_sets_are_every_subset_the_smaller_first():
    names = ("vgg16", "efficientnet_lite0", "efficientnet_lite1")
    assert backbone_sets(LinearProbeConfig(backbones=names)) == [names]
    assert backbone_sets(LinearProbeConfig(backbones=names, choose_backbones=True)) == [
        ("vgg16",), ("efficientnet_lite0",), ("efficientnet_lite1",),
        ("vgg16", "efficientnet_lite0"), ("vgg16", "efficientnet_lite1"),
        ("efficientnet_lite0", "efficientnet_lite1"), names]


@pytest.mark.slow
def test_several_backbones_train_save_load_and_keep_the_best_validation_set(
        probe_dir, tiny_prepared):
    """training.json holds every set's validation figures; the saved model is the set of
    the best validation mAP, and its validation mAP (as evaluate computes it) is the one
    recorded; its weights are scikit-learn's fit on that set's standardised features."""

    from postergenre.data.shards import labels_of
    from postergenre.evaluation.evaluate import predict_split
    from postergenre.evaluation.metrics import compute_metrics
    from postergenre.training.linear_probe import standardise
    from postergenre.training.outputs import load_model

    info = json.loads((probe_dir / "training.json").read_text())
    tried = info["backbone_sets"]
    assert [t["backbones"] for t in tried] == [[BACKBONES[0]], [BACKBONES[1]], BACKBONES]
    assert all({"loss", "auc", "val_loss", "val_auc", "val_map"} <= set(t) for t in tried)
    best = max(tried, key=lambda t: t["val_map"])
    assert info["backbones"] == best["backbones"]

    model = load_model(probe_dir)
    assert model.input_shape == (None, TINY_IMAGE, TINY_IMAGE, 3)
    bases = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    assert bases == [f"{b}_base" for b in best["backbones"]]
    # Each base at its own side, the 32 px input resized to it inside the model.
    sides = {layer.name: layer.size for layer in model.layers if hasattr(layer, "size")}
    assert sides == {f"{b}_base_size": {"efficientnet_lite0": 224,
                                        "efficientnet_lite1": 240}[b]
                     for b in best["backbones"]}

    val_y, _ = labels_of(tiny_prepared, "validation")
    val_scores = predict_split(model, tiny_prepared, "validation")
    recorded = compute_metrics(val_y, val_scores, 0.5)["headline"]["map_macro"]
    assert recorded == pytest.approx(best["val_map"], abs=1e-6)

    features = keras.Model(model.inputs, model.get_layer("standardise").input)
    train_y, _ = labels_of(tiny_prepared, "train")
    train_features = predict_split(features, tiny_prepared, "train")
    assert train_features.shape[1] == 1280 * len(best["backbones"])
    mean, variance = train_features.mean(axis=0), train_features.var(axis=0)
    np.testing.assert_allclose(np.asarray(model.get_layer("standardise").mean).ravel(), mean,
                               rtol=1e-4, atol=1e-4)
    test_features = standardise(predict_split(features, tiny_prepared, "test"), mean, variance)
    keras_scores = predict_split(model, tiny_prepared, "test")
    assert_probe_scores_are_sklearns(keras_scores, train_features, train_y, test_features,
                                     atol=1e-4)


@pytest.mark.slow
def test_predict_gives_each_poster_what_evaluate_scored_for_it(probe_dir, tiny_prepared,
                                                               tiny_data, tiny_split):
    """The served model is the one evaluate scored: predict on the original posters gives
    the test split's shard scores (within 1e-5: only the batch composition differs)."""
    from postergenre.data.labels import read_labels
    from postergenre.data.shards import labels_of
    from postergenre.evaluation.evaluate import predict_split
    from postergenre.serving.predict import load_predictor, predict_posters

    predictor = load_predictor(probe_dir)
    scored = predict_split(predictor.model, tiny_prepared, "test")
    _, ids = labels_of(tiny_prepared, "test")
    files = read_labels(tiny_split / "test.csv").set_index("imdb_id")["poster"]
    served = predict_posters(predictor, [str(tiny_data / files[i]) for i in ids])
    assert len(ids) > 5 and all(r.error is None for r in served)
    np.testing.assert_allclose([r.probabilities for r in served], scored, atol=1e-5)


@pytest.mark.slow
def test_grad_cam_adds_each_base_map(probe_dir, tiny_prepared):
    """The report's and predict's Grad-CAM on a probe of several bases: one feature map
    per base, each upsampled to the poster, summed; the heat maps are in [0, 1]."""
    from postergenre.serving.gradcam import feature_layers, gradcam
    from postergenre.training.outputs import load_model

    info = json.loads((probe_dir / "training.json").read_text())
    model = load_model(probe_dir)
    assert [layer.name for layer in feature_layers(model)] == [
        f"{b}_base" for b in info["backbones"]]
    images = np.random.default_rng(0).uniform(0, 255, (2, TINY_IMAGE, TINY_IMAGE, 3))
    heat = gradcam(model, images.astype("float32"), np.array([0, 6]))
    assert heat.shape == (2, TINY_IMAGE, TINY_IMAGE)
    assert heat.min() >= 0 and heat.max() <= 1
