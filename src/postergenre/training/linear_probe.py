"""The `linear_probe` trainer: frozen bases' pooled, standardised features (one backbone's,
or several side by side, the set chosen on validation) and one scikit-learn logistic
regression per genre, turned into the same Keras model contract.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from postergenre.atomic import atomic_folder
from postergenre.configs import LinearProbeConfig
from postergenre.data.shards import labels_of, read_manifest
from postergenre.evaluation.metrics import compute_metrics
from postergenre.genres import GENRES
from postergenre.training.backbones import backbone
from postergenre.training.bases import build_transfer_base
from postergenre.training.device import seed_everything, training_device
from postergenre.training.features import base_features
from postergenre.training.inputs import input_size
from postergenre.training.live import LiveLog
from postergenre.training.models import build_linear_probe, pooled_features
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


def backbone_sets(config: LinearProbeConfig) -> list[tuple[str, ...]]:
    """The backbone sets the probe fits: `backbones` itself, or with `choose_backbones`
    every non-empty subset of it, the smaller first (a tie keeps the cheaper set)."""
    names = config.backbones
    if not config.choose_backbones:
        return [names]
    return [subset for k in range(1, len(names) + 1)
            for subset in itertools.combinations(names, k)]


@dataclass
class Fitted:
    """One probe fitted on train: its standardisation, weights and validation figures."""

    backbones: tuple[str, ...]
    mean: np.ndarray
    variance: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    constant: list
    figures: dict[str, float]


def _probabilities(fitted: Fitted, features: np.ndarray) -> np.ndarray:
    logits = standardise(features, fitted.mean, fitted.variance) @ fitted.coef.T \
        + fitted.intercept
    return 1.0 / (1.0 + np.exp(-logits))


def fit_probe(backbones: tuple[str, ...], features: dict[str, dict[str, np.ndarray]],
              labels: dict[str, np.ndarray], config: LinearProbeConfig) -> Fitted:
    """The probe on `backbones`' features side by side (train: the fit and its
    standardisation), with its figures on train and validation: loss, auc and (validation)
    the mAP the backbone sets are compared by."""
    joined = {split: np.concatenate([features[b][split] for b in backbones], axis=1)
              for split in labels}
    mean, variance = joined["train"].mean(axis=0), joined["train"].var(axis=0)
    coef, intercept, constant = fit_logistic_per_genre(
        standardise(joined["train"], mean, variance), labels["train"], config)
    fitted = Fitted(backbones, mean, variance, coef, intercept, constant, {})
    for split, prefix in (("train", ""), ("validation", "val_")):
        y, p = labels[split], _probabilities(fitted, joined[split])
        fitted.figures[f"{prefix}loss"] = _binary_cross_entropy(y, p)
        fitted.figures[f"{prefix}auc"] = _keras_auc(y, p)
    fitted.figures["val_map"] = compute_metrics(
        labels["validation"], _probabilities(fitted, joined["validation"]),
        0.5)["headline"]["map_macro"]
    return fitted


def train_linear_probe(prepared_dir: str | os.PathLike[str],
                       model_dir: str | os.PathLike[str], config: LinearProbeConfig,
                       name: str = "linear_probe", data_version: str = "",
                       checkpoint_dir: str | os.PathLike[str] | None = None,
                       live_dir: str | os.PathLike[str] | None = None) -> dict:
    """A logistic regression per genre on frozen bases' pooled, standardised features.

    Each backbone's features of train and validation are computed once (one pass over
    the posters for all of them). The probe is fitted on train for each backbone set
    (backbone_sets: the given one, or every subset to choose from) and scored on
    validation; the set of the best validation mAP is kept (history.json's one entry:
    its loss, val_loss, val_auc; training.json: every set's figures). The result is the
    Keras model posters -> each base (at its side) -> GlobalAveragePooling -> (side by
    side) -> Normalization -> Dense(19, sigmoid) holding the fitted weights, saved and
    served like every other model.

    With one backbone it runs at the model's input side, as the Keras trainers' bases
    do; with several, each runs at its own ImageNet side (the backbone table's
    `image_size`), the input resized to it inside the model.

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
    labels = {split: labels_of(prepared_dir, split)[0] for split in ("train", "validation")}
    names = config.backbones
    dense = all(backbone(b).dense_convolutions for b in names)
    with training_device(config.require_gpu, dense_convolutions=dense) as device:
        log.info("%s: %s on %s, %d px", name, config.describe(), device.kind, size)
        bases = {b: build_transfer_base(b, size if len(names) == 1 else backbone(b).image_size,
                                        config.weights) for b in names}
        extractor = pooled_features(list(bases.values()), size)
        started = time.perf_counter()
        batch = config.batch_size * device.replicas
        features: dict[str, dict[str, np.ndarray]] = {b: {} for b in names}
        for split in labels:
            outputs = base_features(extractor, prepared_dir, split, batch, size)
            for b, values in zip(names, outputs if len(names) > 1 else [outputs],
                                 strict=True):
                features[b][split] = values.astype(np.float64)
        features_seconds = time.perf_counter() - started
        tried = [fit_probe(subset, features, labels, config)
                 for subset in backbone_sets(config)]
        best = max(tried, key=lambda fitted: fitted.figures["val_map"])
        if len(tried) > 1:
            for fitted in tried:
                log.info("%s: %s: validation mAP %.4f%s", name, " + ".join(fitted.backbones),
                         fitted.figures["val_map"], "  (kept)" if fitted is best else "")
        model = build_linear_probe([bases[b] for b in best.backbones], best.mean,
                                   best.variance, best.coef, best.intercept, name, size)
        seconds = time.perf_counter() - started
    history: list[dict[str, float]] = [
        {"epoch": 1, **{k: v for k, v in best.figures.items() if k != "val_map"}}]
    live = LiveLog.open(live_dir)
    if live:
        live.epoch(history[0])
        live.end()
    info = {
        "model": name, "kind": "linear_probe", "description": config.describe(),
        "backbones": list(best.backbones),
        "backbone_sets": [{"backbones": list(f.backbones), **f.figures} for f in tried],
        "image_size": size,
        "parameters": int(model.count_params()),
        "trainable_parameters": int(best.coef.size + best.intercept.size),
        "constant_genres": best.constant,
        "seconds": round(seconds, 1), "feature_seconds": round(features_seconds, 1),
        **device.describe(),
        "train_images_per_second": throughput([], features_seconds, len(labels["train"])),
        "params": to_mapping(config),
    }
    with atomic_folder(model_dir) as work:
        return write_outputs(model, work, history, info, data_version, manifest,
                             prepared_dir, config.test_time_mirror)
