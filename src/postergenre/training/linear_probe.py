"""The `linear_probe` trainer: a frozen base's pooled, standardised features and one
scikit-learn logistic regression per genre, turned into the same Keras model contract.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from pathlib import Path

import keras
import numpy as np

from postergenre.atomic import atomic_folder
from postergenre.configs import LinearProbeConfig
from postergenre.data.shards import labels_of, read_manifest
from postergenre.genres import GENRES
from postergenre.training.backbones import backbone
from postergenre.training.bases import build_transfer_base
from postergenre.training.device import seed_everything, training_device
from postergenre.training.features import base_features
from postergenre.training.inputs import input_size
from postergenre.training.live import LiveLog
from postergenre.training.models import build_linear_probe
from postergenre.training.outputs import throughput, write_outputs
from postergenre.typed_config import to_mapping

log = logging.getLogger(__name__)


def _binary_cross_entropy(y: np.ndarray, p: np.ndarray) -> float:
    """The Keras loss's value (unweighted): mean over labels and examples, clipped."""
    eps = keras.config.epsilon()
    p = np.clip(p, eps, 1 - eps)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


def _keras_auc(y: np.ndarray, p: np.ndarray) -> float:
    """The `auc` the Keras trainers log (multi-label ROC AUC, averaged over the 19
    genres), so every history.json compares."""
    metric = keras.metrics.AUC(multi_label=True, num_labels=len(GENRES))
    metric.update_state(y.astype("float32"), p.astype("float32"))
    return float(metric.result())


def fit_logistic_per_genre(features: np.ndarray, labels: np.ndarray,
                           config: LinearProbeConfig) -> tuple[np.ndarray, np.ndarray, list]:
    """One scikit-learn logistic regression per genre (one-vs-rest) on standardised
    features: (coef (19, d), intercept (19,), the genres fitted as constants).

    A genre with no positive (or no negative) example in train has nothing to separate:
    its weights are zero and its intercept the logit of its smoothed prior,
    (positives + 0.5) / (n + 1), so its score is that prior for every poster.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    n, dim = features.shape
    coef = np.zeros((labels.shape[1], dim))
    intercept = np.zeros(labels.shape[1])
    constant = []
    for j, genre in enumerate(GENRES):
        y = labels[:, j].astype(np.int64)
        if y.min() == y.max():
            prior = (y.sum() + 0.5) / (n + 1.0)
            intercept[j] = math.log(prior / (1.0 - prior))
            constant.append(genre)
            continue
        fitted = LogisticRegression(
            C=config.C, class_weight=None if config.class_weight == "none" else "balanced",
            max_iter=config.max_iter, random_state=config.seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            fitted.fit(features, y)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            log.warning("linear probe: %s did not converge in %d iterations", genre,
                        config.max_iter)
        coef[j], intercept[j] = fitted.coef_[0], fitted.intercept_[0]
    return coef, intercept, constant


def standardise(features: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """(features - mean) / std, a constant feature's std taken as 1 (as StandardScaler)."""
    scale = np.sqrt(np.where(variance > 1e-12, variance, 1.0))
    return (features - mean) / scale


def train_linear_probe(prepared_dir: str | os.PathLike[str],
                       model_dir: str | os.PathLike[str], config: LinearProbeConfig,
                       name: str = "linear_probe", data_version: str = "",
                       checkpoint_dir: str | os.PathLike[str] | None = None,
                       live_dir: str | os.PathLike[str] | None = None) -> dict:
    """A logistic regression per genre on a frozen base's pooled, standardised features.

    The features of train and validation are computed once; the probe is fitted on train
    and scored on validation (history.json's one entry: loss, val_loss, val_auc). The
    result is the Keras model base -> GlobalAveragePooling -> Normalization -> Dense(19,
    sigmoid) holding the fitted weights, saved and served like every other model.

    The model folder is built in `<model_dir>.partial` and swapped into place when whole.
    One fit has no epochs to resume: `checkpoint_dir` is accepted for the trainers'
    common signature, and a killed probe starts over. With `live_dir`, its one entry is
    logged there as the Keras trainers log each epoch (training.live).
    """
    del checkpoint_dir  # nothing to checkpoint (see above)
    # One pass over the posters, no epochs: deterministic kernels cost little here, and
    # the probe has no setting for them.
    seed_everything(config.seed, deterministic=True)
    manifest = read_manifest(prepared_dir)
    size = input_size(config, manifest)
    model_dir = Path(model_dir)
    train_y, _ = labels_of(prepared_dir, "train")
    val_y, _ = labels_of(prepared_dir, "validation")
    with training_device(config.require_gpu,
                         dense_convolutions=backbone(config.backbone).dense_convolutions) as device:
        log.info("%s: %s on %s, %d px", name, config.describe(), device.kind, size)
        base = build_transfer_base(config.backbone, size, config.weights)
        pooled = keras.Model(base.inputs,
                             keras.layers.GlobalAveragePooling2D()(base.outputs[0]))
        started = time.perf_counter()
        batch = config.batch_size * device.replicas
        features = {split: base_features(pooled, prepared_dir, split, batch, size)
                    .astype(np.float64) for split in ("train", "validation")}
        features_seconds = time.perf_counter() - started
        mean, variance = features["train"].mean(axis=0), features["train"].var(axis=0)
        coef, intercept, constant = fit_logistic_per_genre(
            standardise(features["train"], mean, variance), train_y, config)
        model = build_linear_probe(base, mean, variance, coef, intercept, name)
        seconds = time.perf_counter() - started
    history: list[dict[str, float]] = [{"epoch": 1}]
    for split, y, prefix in (("train", train_y, ""), ("validation", val_y, "val_")):
        logits = standardise(features[split], mean, variance) @ coef.T + intercept
        p = 1.0 / (1.0 + np.exp(-logits))
        history[0][f"{prefix}loss"] = _binary_cross_entropy(y, p)
        history[0][f"{prefix}auc"] = _keras_auc(y, p)
    live = LiveLog.open(live_dir)
    if live:
        live.epoch(history[0])
        live.end()
    info = {
        "model": name, "kind": "linear_probe", "description": config.describe(),
        "backbone": config.backbone, "image_size": size,
        "parameters": int(model.count_params()),
        "trainable_parameters": int(coef.size + intercept.size),
        "constant_genres": constant,
        "seconds": round(seconds, 1), "feature_seconds": round(features_seconds, 1),
        **device.describe(),
        "train_images_per_second": throughput([], features_seconds, len(train_y)),
        "params": to_mapping(config),
    }
    with atomic_folder(model_dir) as work:
        return write_outputs(model, work, history, info, data_version, manifest,
                             prepared_dir, config.test_time_mirror)
