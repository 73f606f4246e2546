"""The two training stages: the study's CNN from scratch, and a frozen VGG16 with a head.

Both read the shards `augment` wrote, train with SGD + Nesterov momentum on a per-label
weighted binary cross-entropy, lower the learning rate on plateaus, stop early, and keep
the best epoch by validation loss. They run on whatever TensorFlow sees: the GPU when
there is one, the CPU otherwise (the same code path, the device is only logged).

A model folder holds `model.keras` (raw RGB pixels in [0, 255] -> 19 probabilities),
`history.json` (per-epoch numbers) and `training.json` (what was trained, how).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from postergenre.atomic import write_json
from postergenre.genres import GENRES
from postergenre.models import (
    WeightedBinaryCrossentropy,
    build_scratch_cnn,
    build_vgg16_base,
    build_vgg16_head,
    join_base_and_head,
)
from postergenre.shards import dataset, labels_of, read_manifest

log = logging.getLogger(__name__)
MODEL_FILE = "model.keras"


def visible_devices() -> dict:
    """What this step will train on: TensorFlow's GPUs, or the CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    return {"device": "gpu" if gpus else "cpu", "gpus": [g.name for g in gpus]}


def _seed_everything(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    # Same seed, same metrics on the CPU: ask TensorFlow for deterministic kernels.
    tf.config.experimental.enable_op_determinism()


def _compile(model: keras.Model, manifest: dict, learning_rate: float, momentum: float,
             use_class_weights: bool) -> None:
    weights = manifest["class_weights"] if use_class_weights else [1.0] * len(GENRES)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum,
                                       nesterov=True),
        loss=WeightedBinaryCrossentropy(weights),
        metrics=[keras.metrics.AUC(multi_label=True, num_labels=len(GENRES), name="auc")],
    )


def _fit(model: keras.Model, train, validation, epochs: int, lr_patience: int,
         lr_factor: float, min_lr: float, stop_patience: int) -> list[dict]:
    """Fit with the study's callbacks; leave the best epoch's weights in `model`."""
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
            ],
        )
        model.load_weights(best)
    epochs_log = []
    for i in range(len(history.history["loss"])):
        epochs_log.append({"epoch": i + 1, **{k: float(v[i]) for k, v in history.history.items()}})
    return epochs_log


def _write_outputs(model: keras.Model, model_dir: Path, history: list[dict], info: dict) -> dict:
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save(model_dir / MODEL_FILE)
    write_json(model_dir / "history.json", history)
    best = min(history, key=lambda e: e["val_loss"]) if history else {}
    info = {**info, "best_epoch": best.get("epoch"), "best_val_loss": best.get("val_loss"),
            "epochs_run": len(history), "genres": list(GENRES)}
    write_json(model_dir / "training.json", info)
    return info


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
    seed: int = 0,
) -> dict:
    """Train the study's from-scratch CNN on the shards in `prepared_dir`."""
    _seed_everything(seed)
    manifest = read_manifest(prepared_dir)
    size = int(manifest["image_size"])
    devices = visible_devices()
    log.info("train_scratch on %s, %d px, %d epochs", devices["device"], size, epochs)
    model = build_scratch_cnn(size, conv1_filters, conv2_filters, dense_units, input_dropout,
                              conv_dropout, dense_dropout)
    _compile(model, manifest, learning_rate, momentum, use_class_weights)
    started = time.perf_counter()
    history = _fit(
        model,
        dataset(prepared_dir, "train", batch_size, shuffle=True, seed=seed),
        dataset(prepared_dir, "validation", batch_size),
        epochs, lr_patience, lr_factor, min_lr, stop_patience,
    )
    info = {
        "model": "scratch", "image_size": size, "parameters": int(model.count_params()),
        "seconds": round(time.perf_counter() - started, 1), **devices,
        "params": {"conv1_filters": conv1_filters, "conv2_filters": conv2_filters,
                   "dense_units": dense_units, "input_dropout": input_dropout,
                   "conv_dropout": conv_dropout, "dense_dropout": dense_dropout,
                   "epochs": epochs, "batch_size": batch_size,
                   "learning_rate": learning_rate, "momentum": momentum, "seed": seed,
                   "use_class_weights": use_class_weights},
    }
    return _write_outputs(model, Path(model_dir), history, info)


def _features(base: keras.Model, prepared_dir, split: str, batch_size: int) -> np.ndarray:
    images_only = dataset(prepared_dir, split, batch_size).map(lambda x, y: x)
    return base.predict(images_only, verbose=0)


def train_vgg16(
    prepared_dir: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    weights: str = "imagenet",
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
    seed: int = 0,
) -> dict:
    """Train the study's dense head on a frozen VGG16 base.

    The base is frozen and the training posters are already augmented on disk, so its
    output for a poster never changes: compute the features once and train the head on
    them (exactly what training through the frozen base would do, at the head's cost).
    """
    _seed_everything(seed)
    manifest = read_manifest(prepared_dir)
    size = int(manifest["image_size"])
    devices = visible_devices()
    log.info("train_vgg16 on %s, %d px, weights=%s", devices["device"], size, weights)
    base = build_vgg16_base(size, weights)
    head = build_vgg16_head(base.output_shape[1:], dense_units)
    _compile(head, manifest, learning_rate, momentum, use_class_weights)
    started = time.perf_counter()
    train_y, _ = labels_of(prepared_dir, "train")
    val_y, _ = labels_of(prepared_dir, "validation")
    train = tf.data.Dataset.from_tensor_slices(
        (_features(base, prepared_dir, "train", batch_size), train_y.astype("float32"))
    ).shuffle(len(train_y), seed=seed).batch(batch_size)
    validation = tf.data.Dataset.from_tensor_slices(
        (_features(base, prepared_dir, "validation", batch_size), val_y.astype("float32"))
    ).batch(batch_size)
    history = _fit(head, train, validation, epochs, lr_patience, lr_factor, min_lr,
                   stop_patience)
    model = join_base_and_head(base, head)
    info = {
        "model": "vgg16", "image_size": size, "parameters": int(model.count_params()),
        "trainable_parameters": int(sum(np.prod(w.shape) for w in head.trainable_weights)),
        "seconds": round(time.perf_counter() - started, 1), **devices,
        "params": {"weights": str(weights), "dense_units": dense_units, "epochs": epochs,
                   "batch_size": batch_size, "learning_rate": learning_rate,
                   "momentum": momentum, "seed": seed, "use_class_weights": use_class_weights},
    }
    return _write_outputs(model, Path(model_dir), history, info)


def load_model(model_dir: str | os.PathLike[str]) -> keras.Model:
    """Load a trained model folder's `model.keras` (no optimizer state needed)."""
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {model_dir} the output of a train step?")
    return keras.models.load_model(path, compile=False)
