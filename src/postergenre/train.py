"""The training stage: one trainer per model kind (`models` in params.yaml): the study's
CNN from scratch, and a transfer model (a frozen pretrained base, VGG16 or
EfficientNet-Lite0, with the study's dense head). `train_model` trains one entry.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from postergenre.atomic import write_json
from postergenre.configs import ModelSpec, ScratchConfig, TransferConfig
from postergenre.genres import GENRES
from postergenre.models import (
    WeightedBinaryCrossentropy,
    build_dense_head,
    build_scratch_cnn,
    build_transfer_base,
    join_base_and_head,
    last_block_layers,
)
from postergenre.shards import dataset, decode_poster, labels_of, read_manifest
from postergenre.typed_config import to_mapping

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


class EpochProgress(keras.callbacks.Callback):
    """One progress bar over epochs on a terminal (none when piped), and one INFO line per
    epoch for `-v`: Keras' own per-epoch lines would flood `make run`'s output."""

    def __init__(self, epochs: int, name: str) -> None:
        super().__init__()
        self.bar = tqdm(total=epochs, desc=f"train {name}", unit="epoch", disable=None,
                        leave=False)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        shown = {k: f"{float(v):.4f}" for k, v in logs.items()
                 if k in ("loss", "val_loss", "val_auc")}
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update()
        log.info("%s epoch %d: %s", self.model.name, epoch + 1,
                 " ".join(f"{k} {v}" for k, v in shown.items()))

    def on_train_end(self, logs: dict | None = None) -> None:
        self.bar.close()


def _fit(model: keras.Model, train, validation, config: ScratchConfig | TransferConfig,
         live_dir: Path | None = None, epochs: int | None = None) -> list[dict]:
    """Fit with the study's callbacks; leave the best epoch's weights in `model`.

    `epochs` overrides `config.epochs` (the fine-tuning phase)."""
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
            epochs=epochs or config.epochs,
            verbose=0,
            callbacks=[
                EpochProgress(epochs or config.epochs, model.name),
                keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=config.lr_factor,
                                                  patience=config.lr_patience,
                                                  min_lr=config.min_lr),
                keras.callbacks.EarlyStopping(monitor="val_loss",
                                              patience=config.stop_patience),
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


def train_scratch(prepared_dir: str | os.PathLike[str], model_dir: str | os.PathLike[str],
                  config: ScratchConfig, name: str = "scratch_cnn",
                  data_version: str = "") -> dict:
    """Train the study's from-scratch CNN on the shards in `prepared_dir`."""
    _seed_everything(config.seed)
    manifest = read_manifest(prepared_dir)
    size = int(manifest["image_size"])
    model_dir = Path(model_dir)
    with training_device(config.require_gpu) as device:
        log.info("%s: %s on %s (%d replicas, %s), %d px, %d epochs", name, config.describe(),
                 device.kind, device.replicas, device.precision, size, config.epochs)
        global_batch = config.batch_size * device.replicas
        model = build_scratch_cnn(size, config, name)
        _compile(model, manifest, config.learning_rate, config.momentum,
                 config.use_class_weights, config.clipnorm)
        started = time.perf_counter()
        history = _fit(
            model,
            dataset(prepared_dir, "train", global_batch, shuffle=True, seed=config.seed),
            dataset(prepared_dir, "validation", global_batch),
            config, model_dir / "dvclive",
        )
        seconds = time.perf_counter() - started
    info = {
        "model": name, "kind": "scratch", "description": config.describe(),
        "image_size": size, "parameters": int(model.count_params()),
        "seconds": round(seconds, 1), **device.describe(),
        "train_images_per_second": _throughput(
            history, seconds, int(manifest["counts"]["train"]["records"])),
        "params": to_mapping(config),
    }
    return _write_outputs(model, model_dir, history, info, data_version)


def base_features(base: keras.Model, prepared_dir: str | os.PathLike[str], split: str,
                  batch_size: int) -> np.ndarray:
    """The frozen base's output for every record of a split, in shard order."""
    images_only = dataset(prepared_dir, split, batch_size).map(lambda x, y: x)
    return base.predict(images_only, verbose=0)


def train_transfer(prepared_dir: str | os.PathLike[str], model_dir: str | os.PathLike[str],
                   config: TransferConfig, name: str = "transfer",
                   data_version: str = "") -> dict:
    """Train the study's dense head on a frozen pretrained base (VGG16 or Lite0).

    The base is frozen and the training posters are already augmented on disk, so its
    output for a poster never changes: compute the features once and train the head on
    them (exactly what training through the frozen base would do, at the head's cost).
    With `fine_tune_epochs`, a second phase then unfreezes the base's last block and
    trains through it at `fine_tune_learning_rate`.
    """
    _seed_everything(config.seed)
    manifest = read_manifest(prepared_dir)
    size = int(manifest["image_size"])
    model_dir = Path(model_dir)
    with training_device(config.require_gpu) as device:
        log.info("%s: %s on %s, %d px", name, config.describe(), device.kind, size)
        global_batch = config.batch_size * device.replicas
        base = build_transfer_base(config.backbone, size, config.weights)
        head = build_dense_head(base.output_shape[1:], config.dense_units)
        _compile(head, manifest, config.learning_rate, config.momentum,
                 config.use_class_weights)
        started = time.perf_counter()
        train_y, _ = labels_of(prepared_dir, "train")
        val_y, _ = labels_of(prepared_dir, "validation")
        train = tf.data.Dataset.from_tensor_slices(
            (base_features(base, prepared_dir, "train", global_batch),
             train_y.astype("float32"))
        ).shuffle(len(train_y), seed=config.seed).batch(global_batch)
        validation = tf.data.Dataset.from_tensor_slices(
            (base_features(base, prepared_dir, "validation", global_batch),
             val_y.astype("float32"))
        ).batch(global_batch)
        history = _fit(head, train, validation, config, model_dir / "dvclive")
        model = join_base_and_head(base, head, name)
        if config.fine_tune_epochs > 0:
            # Setting `trainable` on a model sets it on every layer inside: unfreeze all,
            # then freeze back everything but the last block (BatchNorm stays frozen).
            unfrozen = {id(layer) for layer in last_block_layers(base)
                        if not isinstance(layer, keras.layers.BatchNormalization)}
            base.trainable = True
            for layer in base._flatten_layers(include_self=False):
                if not isinstance(layer, keras.Model):
                    layer.trainable = id(layer) in unfrozen
            _compile(model, manifest, config.fine_tune_learning_rate, config.momentum,
                     config.use_class_weights)
            history += _fit(
                model,
                dataset(prepared_dir, "train", global_batch, shuffle=True, seed=config.seed),
                dataset(prepared_dir, "validation", global_batch), config,
                epochs=config.fine_tune_epochs)
        seconds = time.perf_counter() - started
    info = {
        "model": name, "kind": "transfer", "description": config.describe(),
        "backbone": config.backbone, "image_size": size,
        "parameters": int(model.count_params()),
        "trainable_parameters": int(sum(np.prod(w.shape) for w in head.trainable_weights)),
        "seconds": round(seconds, 1), **device.describe(),
        "train_images_per_second": _throughput(
            history, seconds, int(manifest["counts"]["train"]["records"])),
        "params": to_mapping(config),
    }
    return _write_outputs(model, model_dir, history, info, data_version)


# A model kind's trainer: (prepared_dir, model_dir, config, name, data_version) -> info.
TRAINERS: dict[str, Callable[..., dict]] = {"scratch": train_scratch,
                                            "transfer": train_transfer}


def train_model(prepared_dir: str | os.PathLike[str], model_dir: str | os.PathLike[str],
                spec: ModelSpec, data_version: str = "") -> dict:
    """Train one `models` entry of params.yaml with its kind's trainer."""
    if spec.kind not in TRAINERS:
        raise ValueError(f"models.{spec.name}.kind: no trainer for {spec.kind!r}")
    return TRAINERS[spec.kind](prepared_dir, model_dir, spec.config, spec.name, data_version)


def load_model(model_dir: str | os.PathLike[str]) -> keras.Model:
    """Load a trained model folder's `model.keras` (no optimizer state needed)."""
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {model_dir} the output of a train step?")
    return keras.models.load_model(path, compile=False)
