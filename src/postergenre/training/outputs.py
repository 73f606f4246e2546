"""The model folder a trainer writes, and how it is read back.

A model folder holds `model.keras` (raw RGB pixels in [0, 255] -> 19 probabilities),
`saved_model/` (a SavedModel whose `serving_default` takes JPEG bytes), `metadata.json`
(genres in order, image size, preprocessing, data version), `history.json` (one entry per
epoch: loss, val_loss, val_auc; the linear probe has one), `training.json` (with
`resumed_from_epoch`: the checkpoint's last finished epoch when the run resumed, else
null), `timing.json` (seconds and images per second: the clock, kept out of DVC's hash
by .dvcignore). DVCLive's per-epoch files are written while the model trains, into a
folder of their own (training.live).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from postergenre.atomic import write_json
from postergenre.configs import AugmentConfig
from postergenre.data.shards import decode_poster, to_model_size
from postergenre.genres import GENRES
from postergenre.reproducible import (
    export_variables_in_name_order,
    normalize_keras_archive,
    normalize_saved_model_fingerprint,
)

# Importing training.models registers the custom classes a saved model names
# (VggPreprocess, the weighted loss): load_model must find them whoever calls it
# (evaluate, predict, batch-predict).
from postergenre.training.models import Mirror, all_layers, with_mirror

log = logging.getLogger(__name__)


MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
METADATA_FILE = "metadata.json"
TIMING_FILE = "timing.json"
TIMING_KEYS = ("seconds", "feature_seconds", "train_images_per_second")
PREPROCESSING = ("postergenre.data.render.prepare_poster (the poster as the shards store it: "
                 "a square JPEG of `poster.size` pixels at `poster.jpeg_quality`), decoded "
                 "to RGB, area-resized to image_size where that differs, float32 in "
                 "[0, 255]; the model scales its own input")
# A model from before metadata.json recorded it: its posters were stored at the default.
DEFAULT_JPEG_QUALITY = AugmentConfig().jpeg_quality


def stored_poster(metadata: dict) -> tuple[int, int]:
    """(side, JPEG quality) of the prepared posters a model was trained on, from its
    metadata.json (older models: their own image size, and 95)."""
    poster = metadata.get("poster") or {}
    return (int(poster.get("size") or metadata["image_size"]),
            int(poster.get("jpeg_quality") or DEFAULT_JPEG_QUALITY))


def export_serving(model: keras.Model, path: str | os.PathLike[str], image_size: int) -> Path:
    """A SavedModel whose `serving_default` takes JPEG (or PNG) bytes, returns 19 probabilities.

    TF Serving, or any client that can send a string tensor, needs no Python code of ours.
    The scores are evaluate's for posters sent as `prepare_poster` makes them; any other
    image is decoded and area-resized to the model's side, which comes close but is not
    the preprocessing the model was evaluated on.
    A second endpoint, `serve_examples`, takes serialized `tf.train.Example`s as the shards
    hold them (the `image` feature) and returns the same probabilities: the signature
    tfx-bsl's RunInference feeds (one string input, a dict of outputs) in `batch_predict`.
    """
    path = Path(path)

    def decode(data: tf.Tensor) -> tf.Tensor:
        return to_model_size(tf.cast(decode_poster(data), tf.float32), image_size)

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
    with export_variables_in_name_order():
        archive.write_out(str(path), verbose=False)
    return path


def served_model(model: keras.Model, prepared_dir: str | os.PathLike[str],
                 test_time_mirror: str) -> tuple[keras.Model, dict]:
    """The model to save: `model`, or `with_mirror(model)` where `test_time_mirror` says
    so (`auto`: where averaging with the mirror image raises validation mAP; the test
    split is never read). Returns it with a record of the choice for training.json."""
    record: dict = {"setting": test_time_mirror}
    if test_time_mirror == "auto":
        # Imported here: evaluation imports this module (load_model).
        from postergenre.data.shards import labels_of
        from postergenre.evaluation.bootstrap import average_precision
        from postergenre.evaluation.evaluate import predict_split

        labels, _ = labels_of(prepared_dir, "validation")
        inputs = keras.Input(model.input_shape[1:])
        flipped = keras.Model(inputs, model(Mirror(dtype="float32")(inputs)))
        plain = predict_split(model, prepared_dir, "validation")
        mirrored = (plain + predict_split(flipped, prepared_dir, "validation")) / 2
        maps = {name: float(np.nanmean(average_precision(labels, scores)))
                for name, scores in (("plain", plain), ("mirrored", mirrored))}
        record.update(validation_map=maps, used=maps["mirrored"] > maps["plain"])
    else:
        record["used"] = test_time_mirror == "always"
    return (with_mirror(model) if record["used"] else model), record


def write_outputs(model: keras.Model, model_dir: Path, history: list[dict], info: dict,
                  data_version: str, manifest: dict, prepared_dir: str | os.PathLike[str],
                  test_time_mirror: str) -> dict:
    """Write the model folder's files into `model_dir` (the partial folder): the model
    as served (`served_model`). `manifest` is the prepared posters' (the side and JPEG
    quality `predict` must prepare posters at)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    model, info["test_time_mirror"] = served_model(model, prepared_dir, test_time_mirror)
    model.save(model_dir / MODEL_FILE)
    normalize_keras_archive(model_dir / MODEL_FILE)
    export_serving(float32_copy(model), model_dir / SAVED_MODEL_DIR, int(info["image_size"]))
    normalize_saved_model_fingerprint(model_dir / SAVED_MODEL_DIR)
    write_json(model_dir / METADATA_FILE, {
        "model": info["model"], "genres": list(GENRES), "image_size": info["image_size"],
        "input": "float32 RGB pixels in [0, 255], shape (batch, size, size, 3)",
        "poster": {"size": int(manifest["image_size"]),
                   "jpeg_quality": int(manifest.get("jpeg_quality", DEFAULT_JPEG_QUALITY))},
        "preprocessing": PREPROCESSING, "serving_signature": "serving_default: "
        "image_bytes (string, JPEG/PNG) -> probabilities (float32, 19)",
        "data_version": data_version,
    })
    write_json(model_dir / "history.json", history)
    best = min(history, key=lambda e: e["val_loss"]) if history else {}
    info = {**info, "best_epoch": best.get("epoch"), "best_val_loss": best.get("val_loss"),
            "best_val_auc": best.get("val_auc"), "epochs_run": len(history),
            "genres": list(GENRES), "data_version": data_version}
    # The clock's figures in their own file, which .dvcignore keeps out of DVC's hash of
    # the model folder (reproducible.py); training.json is the same on every rerun.
    write_json(model_dir / TIMING_FILE, {k: info[k] for k in TIMING_KEYS if k in info})
    write_json(model_dir / "training.json",
               {k: v for k, v in info.items() if k not in TIMING_KEYS})
    return info


def throughput(history: list[dict], seconds: float, examples: int) -> float:
    return round(examples * max(len(history), 1) / max(seconds, 1e-9), 1)


def load_model(model_dir: str | os.PathLike[str]) -> keras.Model:
    """Load a trained model folder's `model.keras` (no optimizer state needed) to score
    with it, in the precision this machine computes natively: a model trained in mixed
    precision as saved where the machine has units for it, else its `float32_copy`."""
    from postergenre.training.device import scores_natively

    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {model_dir} the output of a train step?")
    model = keras.models.load_model(path, compile=False)
    policies = {layer.dtype_policy.name for layer in all_layers(model)}
    return model if all(map(scores_natively, policies)) else float32_copy(model)


def _float32_policies(config: Any) -> Any:
    """A model config with every layer's dtype policy float32 (weights are float32 in
    every policy, so the trained weights fit it as they are)."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {k: _float32_policies(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_policies(v) for v in config]
    return config


def float32_copy(model: keras.Model) -> keras.Model:
    """`model` computing in float32, with its weights; `model` itself where it already does.

    A model trained in mixed precision (bfloat16 on an A100 or an AMX CPU, float16 on a
    T4) is saved with that policy, and would run its convolutions emulated, several times
    slower, on CPU nodes without bfloat16 instructions (2.7x float32's CPU time for the
    scratch CNN in bench/precision.py). `load_model` scores with this copy on such a
    machine, and the SavedModel (TF Serving, `batch-predict`) is always exported from it.
    Scores differ from the mixed-precision model's by bfloat16's rounding (at most 0.0002
    for the scratch CNN at 128 px in the same bench).
    """
    if all(layer.dtype_policy.name == "float32" for layer in all_layers(model)):
        return model
    serialized = _float32_policies(keras.saving.serialize_keras_object(model))
    copy = keras.saving.deserialize_keras_object(serialized)
    copy.set_weights(model.get_weights())
    return copy
