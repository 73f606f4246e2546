"""Multi-label metrics, under the same names everywhere (DVC, Kubeflow, the gate).

Thresholds are chosen on the validation split and only then applied to test: tuning
on test (as the 2017 study did) overstates every number. Macro averages run over the
genres that have at least one positive example in the evaluated split (a genre with no
example has no defined AP or AUC); `genres_evaluated` says how many that was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from postergenre.genres import GENRES

# scikit-learn (about 1.5 s of CPU to import) is imported by the functions that compute
# with it: the gate and `summary` read this module's names only.

# The baselines scored beside every model. `null` predicts no genre (constant scores);
# `most_frequent` predicts the training split's most frequent genre for every movie, which
# on skewed labels already earns a fair micro-F1 (and, when that genre is on more than
# half the movies, a lower Hamming loss than the null model); `top3` predicts the three
# most frequent training genres for every movie.
NULL_MODEL = "null"
MOST_FREQUENT = "most_frequent"
TOP3 = "top3"
BASELINES: tuple[str, ...] = (NULL_MODEL, MOST_FREQUENT, TOP3)
# The registry's last blessed model, re-scored on this run's test split: a reference the
# gate compares against, never a candidate.
LAST_BLESSED = "last_blessed"
NOT_CANDIDATES: tuple[str, ...] = (*BASELINES, LAST_BLESSED)
HEADLINE_METRICS: tuple[str, ...] = (
    "accuracy",
    "hamming_loss",
    "precision_samples",
    "recall_samples",
    "f1_samples",
    "f1_micro",
    "f1_macro",
    "f1_weighted",
    "map_macro",
    "roc_auc_macro",
    "top_class",
)
# What a person compares, per model: metrics.json, the summary table and the report. The
# full set (HEADLINE_METRICS, counts) is in metrics_all.json beside it.
COMPARED_METRICS: tuple[str, ...] = ("map_macro", "f1_macro", "f1_micro", "top_class",
                                     "hamming_loss", "genres_per_movie")
# metrics.json also carries the test split's true genres per movie: the gate's band and a
# reader need it next to genres_per_movie.
METRICS_FILE_KEYS: tuple[str, ...] = (*COMPARED_METRICS, "true_genres_per_movie")
# DVC's metrics (`dvc metrics show`, `dvc exp show`): one file per model, so the table has
# a row per model and a column per metric, and fits 120 columns.
DVC_METRICS: tuple[str, ...] = ("map_macro", "f1_macro", "f1_micro", "top_class",
                                "hamming_loss")
THRESHOLD_GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)


def _check(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.shape != scores.shape or y_true.ndim != 2 or y_true.shape[1] != len(GENRES):
        raise ValueError(f"labels {y_true.shape} and scores {scores.shape} must both be (n, 19)")
    if y_true.shape[0] == 0:
        raise ValueError("no examples to evaluate")
    return y_true, scores


def choose_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The global decision threshold that maximises micro-F1 (call it on validation)."""
    y_true, scores = _check(y_true, scores)
    positives = int(y_true.sum())
    best, best_tp, best_den = 0.5, -1, 1
    for threshold in THRESHOLD_GRID:
        # micro-F1 = 2tp / (predicted positives + actual positives), 0 where both are 0;
        # compared as exact fractions, so the first (lowest) best wins as in a float loop.
        predicted = scores >= threshold
        tp = int((predicted & (y_true == 1)).sum())
        den = int(predicted.sum()) + positives
        if den and tp * best_den > best_tp * den or best_tp < 0:
            best, best_tp, best_den = float(threshold), tp, max(den, 1)
    return best


def choose_genre_thresholds(y_true: np.ndarray, scores: np.ndarray,
                            fallback: float | None = None) -> np.ndarray:
    """One threshold per genre, each maximising that genre's F1 (call it on validation).

    A genre with no positive example on validation has no F1 to maximise: it gets
    `fallback` (default: the global micro-F1 threshold).
    """
    y_true, scores = _check(y_true, scores)
    if fallback is None:
        fallback = choose_threshold(y_true, scores)
    positives = y_true.sum(axis=0)
    thresholds = np.full(len(GENRES), float(fallback))
    for g in np.flatnonzero(positives):
        predicted = scores[:, g, None] >= THRESHOLD_GRID[None, :]
        tp = (predicted & (y_true[:, g, None] == 1)).sum(axis=0)
        # F1 = 2tp / (2tp + fp + fn) = 2tp / (predicted positives + actual positives)
        f1 = 2 * tp / (predicted.sum(axis=0) + positives[g])
        thresholds[g] = float(THRESHOLD_GRID[int(np.argmax(f1))])  # first best: lowest
    return thresholds


def top_class(y_true: np.ndarray, scores: np.ndarray,
              prior: np.ndarray | None = None) -> float:
    """Share of movies whose highest-scoring genre is one of theirs.

    Ties (a constant scorer such as the null model, or top3's three equal scores) are
    broken by `prior`, the training split's genre frequency: the tie goes to the most
    frequent genre, as a person guessing would. Without a prior a tie counts as a miss.
    """
    best = scores.max(axis=1, keepdims=True)
    tied = scores == best
    if prior is None:
        top = scores.argmax(axis=1)
        hits = y_true[np.arange(len(y_true)), top].astype(bool) & (tied.sum(axis=1) == 1)
        return float(hits.mean())
    ranked = np.where(tied, np.asarray(prior, dtype=np.float64)[None, :], -1.0)
    top = ranked.argmax(axis=1)
    return float(y_true[np.arange(len(y_true)), top].astype(bool).mean())


def compute_metrics(y_true: np.ndarray, scores: np.ndarray,
                    threshold: float | np.ndarray, prior: np.ndarray | None = None) -> dict:
    """Headline metrics plus a per-genre table, for one model's scores on one split.

    `threshold` is one number for every genre or an array of 19 (per-genre thresholds);
    `prior` (training genre frequencies) breaks top-class ties.
    """
    from sklearn.metrics import (
        average_precision_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y_true, scores = _check(y_true, scores)
    threshold = np.asarray(threshold, dtype=np.float64)
    if threshold.ndim and threshold.shape != (len(GENRES),):
        raise ValueError(f"threshold must be one number or 19, got shape {threshold.shape}")
    predicted = (scores >= threshold).astype(np.int64)
    present = np.flatnonzero(y_true.sum(axis=0) > 0)
    both = [g for g in present if y_true[:, g].min() == 0]
    per_genre: dict[str, dict] = {}
    for g, name in enumerate(GENRES):
        support = int(y_true[:, g].sum())
        row = {"support": support, "predicted_positives": int(predicted[:, g].sum()),
               "f1": float(f1_score(y_true[:, g], predicted[:, g], zero_division=0)),
               "ap": math.nan, "auc": math.nan,
               "threshold": float(threshold if not threshold.ndim else threshold[g])}
        if support:
            row["ap"] = float(average_precision_score(y_true[:, g], scores[:, g]))
        if g in both:
            row["auc"] = float(roc_auc_score(y_true[:, g], scores[:, g]))
        per_genre[name] = row
    correct = predicted == y_true
    headline = {
        "accuracy": float(correct.mean()),
        "hamming_loss": float(1.0 - correct.mean()),
        "precision_samples": float(precision_score(y_true, predicted, average="samples",
                                                   zero_division=0)),
        "recall_samples": float(recall_score(y_true, predicted, average="samples",
                                             zero_division=0)),
        "f1_samples": float(f1_score(y_true, predicted, average="samples", zero_division=0)),
        "f1_micro": float(f1_score(y_true, predicted, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(y_true, predicted, average="macro", labels=present,
                                   zero_division=0)),
        "f1_weighted": float(f1_score(y_true, predicted, average="weighted", labels=present,
                                      zero_division=0)),
        "map_macro": float(np.mean([per_genre[GENRES[g]]["ap"] for g in present])),
        "roc_auc_macro": (float(np.mean([per_genre[GENRES[g]]["auc"] for g in both]))
                          if both else math.nan),
        "top_class": top_class(y_true, scores, prior),
        # Label cardinality, predicted and true: a model that predicts no genre has the
        # lowest Hamming loss of all on sparse labels; this pair exposes it (and a model
        # that flags every genre).
        "genres_per_movie": float(predicted.sum(axis=1).mean()),
        "true_genres_per_movie": float(y_true.sum(axis=1).mean()),
        "examples": int(len(y_true)),
        "genres_evaluated": int(len(present)),
    }
    if not threshold.ndim:
        headline["threshold"] = float(threshold)
    return {"headline": headline, "per_genre": per_genre}


def micro_roc(y_true: np.ndarray, scores: np.ndarray, max_points: int = 200) -> list[dict]:
    """The micro-averaged ROC curve as points, with sklearn's `inf` first threshold capped.

    Kubeflow's `log_roc_curve` rejects an infinite threshold, and plots need no more
    than a few hundred points.
    """
    from sklearn.metrics import roc_curve

    y_true, scores = _check(y_true, scores)
    fpr, tpr, thresholds = roc_curve(y_true.ravel(), scores.ravel())
    thresholds = np.where(np.isinf(thresholds), 1.0, np.minimum(thresholds, 1.0))
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr, thresholds = fpr[keep], tpr[keep], thresholds[keep]
    return [{"fpr": float(f), "tpr": float(t), "threshold": float(h)}
            for f, t, h in zip(fpr, tpr, thresholds, strict=True)]


def micro_pr(y_true: np.ndarray, scores: np.ndarray, max_points: int = 200) -> list[dict]:
    """The micro-averaged precision-recall curve as at most `max_points` points."""
    from sklearn.metrics import precision_recall_curve

    y_true, scores = _check(y_true, scores)
    precision, recall, _ = precision_recall_curve(y_true.ravel(), scores.ravel())
    if len(recall) > max_points:
        keep = np.unique(np.linspace(0, len(recall) - 1, max_points).round().astype(int))
        precision, recall = precision[keep], recall[keep]
    return [{"recall": float(r), "precision": float(p)}
            for r, p in zip(recall, precision, strict=True)]


def metrics_table(metrics: Mapping[str, Mapping[str, float | None]]) -> str:
    """A plain-text table: one row per model, one column per compared metric."""
    names = list(metrics)
    width = max(12, *(len(n) for n in names))
    lines = [f"{'model':<{width}} " + " ".join(COMPARED_METRICS)]
    for name in names:
        cells = []
        for metric in COMPARED_METRICS:
            value = metrics[name].get(metric)
            text = "n/a" if value is None else f"{value:.4f}"
            cells.append(f"{text:>{len(metric)}}")
        lines.append(f"{name:<{width}} " + " ".join(cells))
    return "\n".join(lines)
