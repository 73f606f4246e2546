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
   lowest grid value and flags everything). How much to shrink depends on the data set
   and the model (20 suited the MovieLens posters; on a set with all 19 genres it kept
   Western and Musical from ever being predicted), so by default each scorer's shrinkage
   is cross-fitted on validation alone: thresholds chosen on one half of the validation
   movies are scored on the other half and the other way round (five random halvings),
   for each of SHRINKAGE_CANDIDATES; the one with the best held-out macro-F1 among those
   within `micro_f1_slack` of the best held-out micro-F1 (the larger on a tie) is then
   applied to the whole of validation. Shrinking less buys rare genres' F1 with common
   genres' precision: on the MovieLens posters' validation set, macro-F1 alone chose no
   shrinkage and gave up 0.06 of micro-F1 (which the gate judges) for 0.05 of macro-F1
   (docs/results.md);
4. cap: at the threshold, the genre's predicted-positive rate on validation may not
   exceed `max_positive_ratio` times its training frequency; if it does, the threshold
   rises to the lowest grid value that keeps it under (a genre on 0.5% of movies is never
   flagged on half of them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

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
    shrinkage: float
    # Each candidate shrinkage's cross-fitted validation (micro-F1, macro-F1); empty: a
    # fixed shrinkage.
    cross_fitted: dict[float, tuple[float, float]] = field(default_factory=dict)

    def as_json(self, max_positive_ratio: float) -> dict:
        return {
            "global": self.global_threshold,
            "per_genre": dict(zip(GENRES, map(float, self.per_genre), strict=True)),
            "policy": {"name": "per-genre F1 threshold shrunk toward the global micro-F1 "
                               "threshold, predicted positives capped at a multiple of "
                               "the genre's training frequency (chosen on validation)",
                       "shrinkage": self.shrinkage,
                       "shrinkage_cross_fitted": {
                           str(k): {"f1_micro": round(v[0], 4), "f1_macro": round(v[1], 4)}
                           for k, v in self.cross_fitted.items()},
                       "max_positive_ratio": max_positive_ratio,
                       "genre_f1_thresholds": dict(zip(GENRES, map(float,
                                                                   self.genre_f1_thresholds),
                                                       strict=True)),
                       "capped": list(self.capped)},
        }


SHRINKAGE_CANDIDATES: tuple[float, ...] = (0.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
HALVINGS = 5  # random halvings of validation the cross-fitted score averages over


def cross_fitted_shrinkage(y_val: np.ndarray, val_scores: np.ndarray,
                           train_prior: np.ndarray, max_positive_ratio: float,
                           micro_f1_slack: float, seed: int = 0
                           ) -> tuple[float, dict[float, tuple[float, float]]]:
    """The shrinkage chosen by cross-fitting on validation (see the module doc), and each
    candidate's held-out (micro-F1, macro-F1), averaged over HALVINGS random halvings."""
    from postergenre.evaluation.bootstrap import round_metrics

    y_val = np.asarray(y_val)
    rng = np.random.default_rng(seed)
    halvings = []
    for _ in range(HALVINGS):
        rows = rng.permutation(len(y_val))
        halvings.append((rows[:len(rows) // 2], rows[len(rows) // 2:]))
    figures: dict[float, tuple[float, float]] = {}
    for shrinkage in SHRINKAGE_CANDIDATES:
        folds = []
        for halves in halvings:
            for fit, held in (halves, halves[::-1]):
                point = _operating_point(y_val[fit], val_scores[fit], train_prior,
                                         shrinkage, max_positive_ratio)
                held_out = round_metrics(y_val[held], val_scores[held], point.per_genre)
                folds.append((held_out["f1_micro"], held_out["f1_macro"]))
        micro, macro = np.nan_to_num(np.mean(folds, axis=0))
        figures[shrinkage] = (float(micro), float(macro))
    return pick_shrinkage(figures, micro_f1_slack), figures


def pick_shrinkage(figures: dict[float, tuple[float, float]], micro_f1_slack: float) -> float:
    """The best macro-F1 among the candidates within `micro_f1_slack` of the best
    micro-F1 (`figures`: shrinkage -> (micro-F1, macro-F1)); the larger on a tie."""
    best_micro = max(micro for micro, _ in figures.values())
    eligible = {k: macro for k, (micro, macro) in figures.items()
                if micro >= best_micro - micro_f1_slack - 1e-12}
    best_macro = max(eligible.values())
    return max(k for k, macro in eligible.items() if macro >= best_macro - 1e-12)


def choose_operating_point(y_val: np.ndarray, val_scores: np.ndarray,
                           train_prior: np.ndarray, shrinkage: float | None,
                           max_positive_ratio: float, micro_f1_slack: float = 0.01,
                           seed: int = 0) -> OperatingPoint:
    """The served thresholds for one scorer (see the module's docstring); validation only.

    `train_prior` is each genre's frequency on the training split (movies counted once).
    `shrinkage` None: cross-fitted (`cross_fitted_shrinkage`, halves drawn from `seed`).
    """
    if shrinkage is not None:
        return _operating_point(y_val, val_scores, train_prior, shrinkage, max_positive_ratio)
    chosen, figures = cross_fitted_shrinkage(y_val, val_scores, train_prior,
                                             max_positive_ratio, micro_f1_slack, seed)
    point = _operating_point(y_val, val_scores, train_prior, chosen, max_positive_ratio)
    return dataclasses.replace(point, cross_fitted=figures)


def _operating_point(y_val: np.ndarray, val_scores: np.ndarray, train_prior: np.ndarray,
                     shrinkage: float, max_positive_ratio: float) -> OperatingPoint:
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
    return OperatingPoint(float(global_threshold), np.round(served, 4), own, tuple(capped),
                          float(shrinkage))


def thresholds_vector(saved: dict) -> np.ndarray:
    """A thresholds.json entry ({'per_genre': {genre: t}}) as 19 numbers, GENRES order."""
    per_genre = saved.get("per_genre") or {}
    missing = [g for g in GENRES if g not in per_genre]
    if missing:
        raise ValueError(f"per_genre thresholds lack {', '.join(missing)}")
    return np.array([float(per_genre[g]) for g in GENRES])
