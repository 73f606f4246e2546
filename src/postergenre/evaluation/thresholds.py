"""The served operating point: one set of per-genre decision thresholds per model, chosen
on validation by one policy, and used by evaluate, gate, report, summary, `predict` and
`batch-predict` alike (evaluate writes it to thresholds.json; the gate copies the
blessed model's into the blessing and the registry entry).

The policy, per genre:
1. the global threshold: the one that maximises micro-F1 on validation;
2. the genre's own threshold: the one that maximises its F1 on validation;
3. shrink (2) toward (1) by the genre's evidence: with n validation positives the genre's
   own threshold gets weight n / (n + shrinkage), so a genre with 3 positives mostly
   keeps the global threshold (an F1 maximised on 3 movies is noise: it tends to the
   lowest grid value and flags everything);
4. cap: at the threshold, the genre's predicted-positive rate on validation may not
   exceed `max_positive_ratio` times its training frequency; if it does, the threshold
   rises to the lowest grid value that keeps it under (a genre on 0.5% of movies is never
   flagged on half of them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from postergenre.evaluation.metrics import THRESHOLD_GRID, choose_genre_thresholds, choose_threshold
from postergenre.genres import GENRES


@dataclass(frozen=True)
class OperatingPoint:
    """One scorer's served thresholds and how they were reached (for thresholds.json)."""

    global_threshold: float
    per_genre: np.ndarray  # 19 thresholds, GENRES order: what is served
    genre_f1_thresholds: np.ndarray  # step 2, before shrinking and capping
    capped: tuple[str, ...]  # genres whose threshold the cap raised

    def as_json(self, shrinkage: float, max_positive_ratio: float) -> dict:
        return {
            "global": self.global_threshold,
            "per_genre": dict(zip(GENRES, map(float, self.per_genre), strict=True)),
            "policy": {"name": "per-genre F1 threshold shrunk toward the global micro-F1 "
                               "threshold, predicted positives capped at a multiple of "
                               "the genre's training frequency (chosen on validation)",
                       "shrinkage": shrinkage, "max_positive_ratio": max_positive_ratio,
                       "genre_f1_thresholds": dict(zip(GENRES, map(float,
                                                                   self.genre_f1_thresholds),
                                                       strict=True)),
                       "capped": list(self.capped)},
        }


def choose_operating_point(y_val: np.ndarray, val_scores: np.ndarray,
                           train_prior: np.ndarray, shrinkage: float,
                           max_positive_ratio: float) -> OperatingPoint:
    """The served thresholds for one scorer (see the module's docstring); validation only.

    `train_prior` is each genre's frequency on the training split (movies counted once).
    """
    y_val = np.asarray(y_val).astype(np.int64)
    val_scores = np.asarray(val_scores, dtype=np.float64)
    global_threshold = choose_threshold(y_val, val_scores)
    own = choose_genre_thresholds(y_val, val_scores, fallback=global_threshold)
    positives = y_val.sum(axis=0).astype(np.float64)
    weight = positives / (positives + shrinkage) if shrinkage > 0 else np.ones_like(positives)
    served = weight * own + (1 - weight) * global_threshold
    # A genre never seen in training may still be flagged at its cap's floor: one movie.
    allowed = np.maximum(max_positive_ratio * np.asarray(train_prior, dtype=np.float64),
                         1.0 / max(len(y_val), 1))
    capped = []
    for g in range(len(GENRES)):
        if (val_scores[:, g] >= served[g]).mean() <= allowed[g]:
            continue
        higher = [t for t in THRESHOLD_GRID if t > served[g]
                  and (val_scores[:, g] >= t).mean() <= allowed[g]]
        # No grid value is enough (a scorer sure of this genre for too many movies): flag
        # it only at full certainty.
        served[g] = float(higher[0]) if higher else 1.0
        capped.append(GENRES[g])
    return OperatingPoint(float(global_threshold), np.round(served, 4), own, tuple(capped))


def thresholds_vector(saved: dict) -> np.ndarray:
    """A thresholds.json entry ({'per_genre': {genre: t}}) as 19 numbers, GENRES order."""
    per_genre = saved.get("per_genre") or {}
    missing = [g for g in GENRES if g not in per_genre]
    if missing:
        raise ValueError(f"per_genre thresholds lack {', '.join(missing)}")
    return np.array([float(per_genre[g]) for g in GENRES])
