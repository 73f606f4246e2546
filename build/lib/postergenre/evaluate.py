"""The `evaluate` stage: every model and the null model, scored the same way on test.

For each trained model: scores on validation choose the decision threshold, scores on
test give the metrics. The null model predicts no genre (constant scores), and stands
beside every model so a 0.89 per-label accuracy can no longer hide a useless model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from postergenre.atomic import write_json
from postergenre.genres import GENRES
from postergenre.metrics import (
    BASELINES,
    MOST_FREQUENT,
    NULL_MODEL,
    choose_threshold,
    compute_metrics,
    micro_roc,
)
from postergenre.shards import dataset, labels_of

log = logging.getLogger(__name__)


def predict_split(model, prepared_dir: str | os.PathLike[str], split: str,
                  batch_size: int = 64) -> np.ndarray:
    """A model's (n, 19) scores on one split, in shard order (the order of `labels_of`)."""
    images = dataset(prepared_dir, split, batch_size).map(lambda x, y: x)
    return np.asarray(model.predict(images, verbose=0), dtype=np.float64)


def null_scores(n: int) -> np.ndarray:
    """The null model: the same score (zero) for every genre, so it predicts none."""
    return np.zeros((n, len(GENRES)), dtype=np.float64)


def most_frequent_scores(n: int, train_labels: np.ndarray) -> np.ndarray:
    """Score 1 for the training split's most frequent genre, 0 for every other, for all."""
    scores = np.zeros((n, len(GENRES)), dtype=np.float64)
    scores[:, int(np.asarray(train_labels).sum(axis=0).argmax())] = 1.0
    return scores


def _clean(value):
    """JSON has no NaN: write None, which every reader (and the gate) treats as missing."""
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def evaluate_models(
    prepared_dir: str | os.PathLike[str],
    model_dirs: Mapping[str, str | os.PathLike[str]],
    metrics_path: str | os.PathLike[str],
    per_genre_path: str | os.PathLike[str],
    plots_dir: str | os.PathLike[str],
    batch_size: int = 64,
) -> dict:
    """Write headline metrics (DVC metrics), per-genre tables and micro ROC curves."""
    from postergenre.train import load_model  # TensorFlow loads only when models are scored

    if not model_dirs:
        raise ValueError("evaluate needs at least one model")
    clash = set(model_dirs) & set(BASELINES)
    if clash:
        raise ValueError(f"{sorted(clash)} name baselines; give the model another name")
    train_labels, train_ids = labels_of(prepared_dir, "train")
    # Count each training movie once: augmented copies would tilt the baseline.
    _, first = np.unique(train_ids, return_index=True)
    y_val, _ = labels_of(prepared_dir, "validation")
    y_test, _ = labels_of(prepared_dir, "test")
    plots = Path(plots_dir)
    plots.mkdir(parents=True, exist_ok=True)

    headline: dict[str, dict] = {}
    per_genre: dict[str, dict] = {}
    for name, model_dir in model_dirs.items():
        model = load_model(model_dir)
        threshold = choose_threshold(y_val, predict_split(model, prepared_dir, "validation",
                                                          batch_size))
        test_scores = predict_split(model, prepared_dir, "test", batch_size)
        result = compute_metrics(y_test, test_scores, threshold)
        headline[name], per_genre[name] = result["headline"], result["per_genre"]
        write_json(plots / f"roc_{name}.json", micro_roc(y_test, test_scores))
        log.info("%s: threshold %.2f, f1_micro %.3f, map_macro %.3f", name, threshold,
                 headline[name]["f1_micro"], headline[name]["map_macro"])
    for name, scores in ((NULL_MODEL, null_scores(len(y_test))),
                         (MOST_FREQUENT, most_frequent_scores(len(y_test),
                                                              train_labels[first]))):
        result = compute_metrics(y_test, scores, threshold=0.5)
        headline[name], per_genre[name] = result["headline"], result["per_genre"]

    write_json(metrics_path, _clean(headline))
    write_json(per_genre_path, _clean(per_genre))
    return headline
