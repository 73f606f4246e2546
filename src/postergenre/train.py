"""The two training stages: the study's CNN from scratch, and a transfer model (a frozen
pretrained base, VGG16 by default or EfficientNet-Lite0, with the study's dense head).

Both read the shards `augment` wrote, train with SGD + Nesterov momentum on a per-label
weighted binary cross-entropy, lower the learning rate on plateaus, stop early, and keep
the best epoch by validation loss. The same code runs on the CPU and on GPUs: when
TensorFlow sees a GPU, training uses mixed precision (float32 outputs) and a
MirroredStrategy over every visible GPU, with the batch scaled per replica.

A model folder holds `model.keras` (raw RGB pixels in [0, 255] -> 19 probabilities),
`saved_model/` (a SavedModel whose `serving_default` takes JPEG bytes), `metadata.json`
(genres in order, image size, preprocessing, data version), `history.json`,
`training.json` and `dvclive/` (per-epoch metrics and plots for DVC).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from postergenre.atomic import write_json
from postergenre.genres import GENRES
from postergenre.models import (
    WeightedBinaryCrossentropy,
    build_scratch_cnn,
    build_transfer_base,
    build_vgg16_head,
    join_base_and_head,
    last_block_layers,
)
from postergenre.shards import dataset, decode_poster, labels_of, read_manifest

log = logging.getLogger(__name__)
MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
METADATA_FILE = "metadata.json"
PREPROCESSING = ("decode JPEG to RGB uint8, resize the whole poster to a square of "
                 "image_size pixels (area interpolation), float32 in [0, 255]; the model "
                 "scales its own input")


class NoGpuError(RuntimeError):
    """A step asked to run on a GPU (require_gpu) found none."""


@dataclass(frozen=True)
class Device:
    """Where a training step runs, and how (strategy, replicas, precision)."""

    strategy: tf.distribute.Strategy
    kind: str
    gpus: tuple[str, ...]
    replicas: int
    precision: str

    def describe(self) -> dict:
        return {"device": self.kind, "gpus": list(self.gpus), "replicas": self.replicas,
                "precision": self.precision}


def visible_devices() -> dict:
    """What this step would train on: TensorFlow's GPUs, or the CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    return {"device": "gpu" if gpus else "cpu", "gpus": [g.name for g in gpus]}


@contextlib.contextmanager
def training_device(require_gpu: bool = False) -> Iterator[Device]:
    """Pick the strategy and precision for the visible hardware; restore them after.

    With `require_gpu`, fail fast (before any data is read) when no GPU is visible: a
    task scheduled on a GPU node that lost its driver should not train for hours on CPU.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if require_gpu and not gpus:
        raise NoGpuError(
            "this step was asked to run on a GPU (require_gpu) but TensorFlow sees none: "
            "check the node's NVIDIA driver, the nvidia.com/gpu resource request and that "
            "the image is the GPU image; set require_gpu false to train on the CPU")
    previous = keras.mixed_precision.global_policy().name
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
        strategy: tf.distribute.Strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    device = Device(strategy, "gpu" if gpus else "cpu", tuple(g.name for g in gpus),
                    strategy.num_replicas_in_sync,
                    keras.mixed_precision.global_policy().name)
    try:
        with strategy.scope():
            yield device
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _seed_everything(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    # Same seed, same metrics on the CPU: ask TensorFlow for deterministic kernels.
    tf.config.experimental.enable_op_determinism()


def _compile(model: keras.Model, manifest: dict, learning_rate: float, momentum: float,
             use_class_weights: bool, clipnorm: float = 0.0) -> None:
    weights = manifest["class_weights"] if use_class_weights else [1.0] * len(GENRES)
    # Clipping each gradient's norm keeps one large step from killing the ReLUs of a
    # network without batch normalisation (the study's CNN at a high learning rate).
    clip = {"clipnorm": clipnorm} if clipnorm > 0 else {}
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum,
                                       nesterov=True, **clip),
        loss=WeightedBinaryCrossentropy(weights),
        metrics=[keras.metrics.AUC(multi_label=True, num_labels=len(GENRES), name="auc")],
    )


def _fit(model: keras.Model, train, validation, epochs: int, lr_patience: int,
         lr_factor: float, min_lr: float, stop_patience: int,
         live_dir: Path | None = None) -> list[dict]:
    """Fit with the study's callbacks; leave the best epoch's weights in `model`."""
    callbacks: list[keras.callbacks.Callback] = []
    if live_dir is not None:
        from dvclive import Live
        from dvclive.keras import DVCLiveCallback

        try:
            # dvcyaml=None: the project's dvc.yaml declares the plots; no experiment commits.
            live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None)
        except Exception as err:  # noqa: BLE001 - logging must never stop training
            # dvclive reads the git state (it fails in a repository with no commit yet).
            log.warning("dvclive disabled (%s); per-epoch numbers stay in history.json", err)
        else:
            callbacks.append(DVCLiveCallback(live=live))
    with tempfile.TemporaryDirectory(prefix="postergenre-ckpt-") as tmp:
        best = os.path.join(tmp, "best.weights.h5")
        history = model.fit(
            train,
            validation_data=validation,
            epochs=epochs,
            verbose=2,
            callbacks=[
                keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=lr_factor,
                                                  patience=lr_patience, min_lr=min_lr),
                keras.callbacks.EarlyStopping(monitor="val_loss", patience=stop_patience),
                keras.callbacks.ModelCheckpoint(best, monitor="val_loss", save_best_only=True,
                                                save_weights_only=True),
                *callbacks,
            ],
        )
        if os.path.exists(best):
            model.load_weights(best)
    epochs_log = []
    for i in range(len(history.history["loss"])):
        epochs_log.append({"epoch": i + 1, **{k: float(v[i]) for k, v in history.history.items()}})
    return epochs_log


def export_serving(model: keras.Model, path: str | os.PathLike[str], image_size: int) -> Path:
    """A SavedModel whose `serving_default` takes JPEG (or PNG) bytes, returns 19 probabilities.

    TF Serving, or any client that can send a string tensor, needs no Python code of ours.
    A second endpoint, `serve_examples`, takes serialized `tf.train.Example`s as the shards
    hold them (the `image` feature) and returns the same probabilities: the signature
    tfx-bsl's RunInference feeds (one string input, a dict of outputs) in `batch_predict`.
    """
    path = Path(path)

    def decode(data: tf.Tensor) -> tf.Tensor:
        image = tf.image.resize(decode_poster(data), [image_size, image_size], method="area")
        return tf.cast(image, tf.float32)

    def probabilities(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.float32)
        return {"probabilities": tf.cast(model(images, training=False), tf.float32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return probabilities(image_bytes)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        # Only the image is parsed: scoring needs no labels (a catalogue has none).
        features = {"image": tf.io.FixedLenFeature([], tf.string)}
        return probabilities(tf.io.parse_example(examples, features)["image"])

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve)
    archive.add_endpoint("serve_examples", serve_examples)
    archive.write_out(str(path), verbose=False)
    return path


def _write_outputs(model: keras.Model, model_dir: Path, history: list[dict], info: dict,
                   data_version: str) -> dict:
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save(model_dir / MODEL_FILE)
    export_serving(model, model_dir / SAVED_MODEL_DIR, int(info["image_size"]))
    write_json(model_dir / METADATA_FILE, {
        "model": info["model"], "genres": list(GENRES), "image_size": info["image_size"],
        "input": "float32 RGB pixels in [0, 255], shape (batch, size, size, 3)",
        "preprocessing": PREPROCESSING, "serving_signature": "serving_default: "
        "image_bytes (string, JPEG/PNG) -> probabilities (float32, 19)",
        "data_version": data_version,
    })
    write_json(model_dir / "history.json", history)
    best = min(history, key=lambda e: e["val_loss"]) if history else {}
    info = {**info, "best_epoch": best.get("epoch"), "best_val_loss": best.get("val_loss"),
            "best_val_auc": best.get("val_auc"), "epochs_run": len(history),
            "genres": list(GENRES), "data_version": data_version}
    write_json(model_dir / "training.json", info)
    return info


def _throughput(history: list[dict], seconds: float, examples: int) -> float:
    return round(examples * max(len(history), 1) / max(seconds, 1e-9), 1)


def train_scratch(
    prepared_dir: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    conv1_filters: int = 64,
    conv2_filters: int = 128,
    dense_units: int = 256,
    input_dropout: float = 0.2,
    conv_dropout: float = 0.25,
    dense_dropout: float = 0.5,
    epochs: int = 100,
    batch_size: int = 32,
    learning_rate: float = 0.1,
    momentum: float = 0.9,
    lr_factor: float = 0.1,
    lr_patience: int = 15,
    min_lr: float = 1e-6,
    stop_patience: int = 20,
    use_class_weights: bool = True,
    clipnorm: float = 0.0,
    seed: int = 0,
    require_gpu: bool = False,
    data_version: str = "",
) -> dict:
    """Train the study's from-scratch CNN on the shards in `prepared_dir`.

    `clipnorm` > 0 clips each gradient's norm (the study did not; 0 switches it off).
    """
    _seed_everything(seed)
    manifest = read_manifest(prepared_dir)
    size = int(manifest["image_size"])
    model_dir = Path(model_dir)
    with training_device(require_gpu) as device:
        log.info("train_scratch on %s (%d replicas, %s), %d px, %d epochs", device.kind,
                 device.replicas, device.precision, size, epochs)
        global_batch = batch_size * device.replicas
        model = build_scratch_cnn(size, conv1_filters, conv2_filters, dense_units, input_dropout,
                                  conv_dropout, dense_dropout)
        _compile(model, manifest, learning_rate, momentum, use_class_weights, clipnorm)
        started = time.perf_counter()
        history = _fit(
            model,
            dataset(prepared_dir, "train", global_batch, shuffle=True, seed=seed),
            dataset(prepared_dir, "validation", global_batch),
            epochs, lr_patience, lr_factor, min_lr, stop_patience, model_dir / "dvclive",
        )
        seconds = time.perf_counter() - started
    info = {
        "model": "scratch", "image_size": size, "parameters": int(model.count_params()),
        "seconds": round(seconds, 1), **device.describe(),
        "train_images_per_second": _throughput(
            history, seconds, int(manifest["counts"]["train"]["records"])),
        "params": {"conv1_filters": conv1_filters, "conv2_filters": conv2_filters,
                   "dense_units": dense_units, "input_dropout": input_dropout,
                   "conv_dropout": conv_dropout, "dense_dropout": dense_dropout,
                   "epochs": epochs, "batch_size": batch_size,
                   "learning_rate": learning_rate, "momentum": momentum, "seed": seed,
                   "use_class_weights": use_class_weights, "clipnorm": clipnorm},
    }
    return _write_outputs(model, model_dir, history, info, data_version)


def base_features(base: keras.Model, prepared_dir: str | os.PathLike[str], split: str,
                  batch_size: int) -> np.ndarray:
    """The frozen base's output for every record of a split, in shard order."""
    images_only = dataset(prepared_dir, split, batch_size).map(lambda x, y: x)
    return base.predict(images_only, verbose=0)


def train_vgg16(
    prepared_dir: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    weights: str = "imagenet",
    backbone: str = "vgg16",
    dense_units: int = 4096,
    epochs: int = 50,
    batch_size: int = 32,
    learning_rate: float = 0.01,
    momentum: float = 0.9,
    lr_factor: float = 0.1,
    lr_patience: int = 15,
    min_lr: float = 1e-6,
    stop_patience: int = 20,
    use_class_weights: bool = True,
    fine_tune_epochs: int = 0,
    fine_tune_learning_rate: float = 1e-4,
    seed: int = 0,
    require_gpu: bool = False,
    data_version: str = "",
) -> dict:
    """Train the study's dense head on a frozen pretrained base (VGG16 by default).

    The base is frozen and the training posters are already augmented on disk, so its
    output for a poster never changes: compute the features once and train the head on
    them (exactly what training through the frozen base would do, at the head's cost).
    With `fine_tune_epochs`, a second phase then unfreezes the base's last block and
    trains through it at `fine_tune_learning_rate`.
    """
    _seed_everything(seed)
    manifest = read_manifest(prepared_dir)
    size = int(manifest["image_size"])
    model_dir = Path(model_dir)
    with training_device(require_gpu) as device:
        log.info("train_vgg16 (%s base) on %s, %d px, weights=%s", backbone, device.kind,
                 size, weights)
        global_batch = batch_size * device.replicas
        base = build_transfer_base(backbone, size, weights)
        head = build_vgg16_head(base.output_shape[1:], dense_units)
        _compile(head, manifest, learning_rate, momentum, use_class_weights)
        started = time.perf_counter()
        train_y, _ = labels_of(prepared_dir, "train")
        val_y, _ = labels_of(prepared_dir, "validation")
        train = tf.data.Dataset.from_tensor_slices(
            (base_features(base, prepared_dir, "train", global_batch),
             train_y.astype("float32"))
        ).shuffle(len(train_y), seed=seed).batch(global_batch)
        validation = tf.data.Dataset.from_tensor_slices(
            (base_features(base, prepared_dir, "validation", global_batch),
             val_y.astype("float32"))
        ).batch(global_batch)
        history = _fit(head, train, validation, epochs, lr_patience, lr_factor, min_lr,
                       stop_patience, model_dir / "dvclive")
        model = join_base_and_head(base, head)
        if fine_tune_epochs > 0:
            # Setting `trainable` on a model sets it on every layer inside: unfreeze all,
            # then freeze back everything but the last block (BatchNorm stays frozen).
            unfrozen = {id(layer) for layer in last_block_layers(base)
                        if not isinstance(layer, keras.layers.BatchNormalization)}
            base.trainable = True
            for layer in base._flatten_layers(include_self=False):
                if not isinstance(layer, keras.Model):
                    layer.trainable = id(layer) in unfrozen
            _compile(model, manifest, fine_tune_learning_rate, momentum, use_class_weights)
            history += _fit(
                model, dataset(prepared_dir, "train", global_batch, shuffle=True, seed=seed),
                dataset(prepared_dir, "validation", global_batch), fine_tune_epochs,
                lr_patience, lr_factor, min_lr, stop_patience)
        seconds = time.perf_counter() - started
    info = {
        "model": "vgg16" if backbone == "vgg16" else backbone, "backbone": backbone,
        "image_size": size, "parameters": int(model.count_params()),
        "trainable_parameters": int(sum(np.prod(w.shape) for w in head.trainable_weights)),
        "seconds": round(seconds, 1), **device.describe(),
        "train_images_per_second": _throughput(
            history, seconds, int(manifest["counts"]["train"]["records"])),
        "params": {"weights": str(weights), "backbone": backbone, "dense_units": dense_units,
                   "epochs": epochs, "batch_size": batch_size,
                   "learning_rate": learning_rate, "momentum": momentum, "seed": seed,
                   "use_class_weights": use_class_weights,
                   "fine_tune_epochs": fine_tune_epochs,
                   "fine_tune_learning_rate": fine_tune_learning_rate},
    }
    return _write_outputs(model, model_dir, history, info, data_version)


def load_model(model_dir: str | os.PathLike[str]) -> keras.Model:
    """Load a trained model folder's `model.keras` (no optimizer state needed)."""
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {model_dir} the output of a train step?")
    return keras.models.load_model(path, compile=False)
