"""Paired bootstrap confidence intervals for micro-F1, macro-F1 and mAP.

"Paired": every model (and baseline) is scored on the same resampled test movies in
each round, so the interval of a difference between two models reflects how much the
test set could move that difference, not the two models' separate noise. The gate uses
the lower bound of (candidate - last blessed) to decide "not worse than -epsilon".

The intervals are basic (reflected) bootstrap intervals: [2e - q_hi, 2e - q_lo] around
the estimate e, from the rounds' quantiles q. Resampling duplicates movies, and a
duplicated positive of a rare genre raises its AP: on 1,436 real test posters the
rounds' mean mAP sat 0.007 above the estimate, so the percentile interval [q_lo, q_hi]
(0.318 to 0.357 around 0.326) lay almost wholly above it. The basic interval reflects
that lean (0.300 to 0.335) rather than reporting it as a gain.

The per-round metrics are computed with numpy from counts and sorted scores (the same
definitions as scikit-learn's, which tests check); scikit-learn's per-call overhead
would make a few hundred rounds over several models take minutes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from postergenre.progress import track

BOOTSTRAP_METRICS: tuple[str, ...] = ("f1_micro", "f1_macro", "map_macro")


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-column average precision (scikit-learn's definition, ties grouped); NaN with
    no positive example."""
    n, k = y_true.shape
    result = np.full(k, np.nan)
    order = np.argsort(-scores, axis=0, kind="stable")
    for g in range(k):
        positives = y_true[:, g].sum()
        if not positives:
            continue
        s = scores[order[:, g], g]
        hits = np.cumsum(y_true[order[:, g], g])
        # The last index of each run of equal scores is one threshold of the curve.
        last = np.r_[np.flatnonzero(np.diff(s)), n - 1]
        tp = hits[last]
        precision = tp / (last + 1)
        recall = tp / positives
        result[g] = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return result


def _f1s(y_true: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """(micro-F1, macro-F1 over genres with a positive example), zero_division=0."""
    tp = (predicted & y_true).sum(axis=0)
    fp = (predicted & ~y_true).sum(axis=0)
    fn = (~predicted & y_true).sum(axis=0)
    denominator = 2 * tp.sum() + fp.sum() + fn.sum()
    micro = 2 * tp.sum() / denominator if denominator else 0.0
    present = y_true.any(axis=0)
    per_genre_den = 2 * tp + fp + fn
    per_genre = np.divide(2 * tp, per_genre_den, out=np.zeros(len(tp)),
                          where=per_genre_den > 0)
    return float(micro), float(per_genre[present].mean()) if present.any() else float("nan")


def round_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float | np.ndarray) -> dict:
    """micro-F1, macro-F1 and mAP of one model on one (resampled) set of movies."""
    y = np.asarray(y_true).astype(bool)
    micro, macro = _f1s(y, scores >= threshold)
    ap = average_precision(y.astype(np.int64), scores)
    present = y.any(axis=0)
    return {"f1_micro": micro, "f1_macro": macro,
            "map_macro": float(np.nanmean(ap[present])) if present.any() else float("nan")}


INTERVAL_METHOD = "basic"  # recorded in bootstrap.json (see the module doc)


def _interval(values: np.ndarray, estimate: float, confidence: float,
              bounds: tuple[float, float] = (0.0, 1.0)) -> dict:
    """The basic bootstrap interval of `estimate` from its rounds' `values`, clipped to
    the range the quantity can take (`bounds`: a metric's, or a difference's)."""
    alpha = (1.0 - confidence) / 2
    finite = values[np.isfinite(values)]
    if not finite.size or not np.isfinite(estimate):
        return {"estimate": None, "low": None, "high": None}
    q_low, q_high = np.quantile(finite, [alpha, 1.0 - alpha])
    low, high = np.clip([2 * estimate - q_high, 2 * estimate - q_low], *bounds)
    return {"estimate": float(estimate), "low": float(low), "high": float(high)}


def paired_bootstrap(
    y_true: np.ndarray,
    models: Mapping[str, tuple[np.ndarray, float | np.ndarray]],
    resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    reference: str | None = None,
    versus: str | None = None,
) -> dict:
    """Basic bootstrap intervals per model, and of (model - `reference`) for every other
    model.

    `models` maps a name to (test scores, decision threshold). With `resamples` 0 the
    intervals collapse to the point estimates (low = high = estimate). `versus` names a
    second model every other one is compared with in the same rounds (`versus` in the
    result; reported, not gated on): the linear probe, say.
    """
    if resamples < 0:
        raise ValueError(f"resamples must be >= 0, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    for role, name in (("reference", reference), ("versus", versus)):
        if name is not None and name not in models:
            raise KeyError(f"{role} {name!r} is not among the models {sorted(models)}")
    y_true = np.asarray(y_true)
    n = len(y_true)
    names = list(models)
    estimates = {m: round_metrics(y_true, *models[m]) for m in names}
    rounds = {m: {k: np.empty(resamples) for k in BOOTSTRAP_METRICS} for m in names}
    rng = np.random.default_rng(seed)
    for r in track(range(resamples), "evaluate: bootstrap", "round"):
        rows = rng.integers(0, n, n)
        for m in names:
            scores, threshold = models[m]
            for key, value in round_metrics(y_true[rows], scores[rows], threshold).items():
                rounds[m][key][r] = value

    def interval(m: str, key: str) -> dict:
        if not resamples:
            e = estimates[m][key]
            return {"estimate": e, "low": e, "high": e}
        return _interval(rounds[m][key], estimates[m][key], confidence)

    result: dict = {
        "resamples": resamples, "confidence": confidence, "seed": seed,
        "method": INTERVAL_METHOD,
        "reference": reference,
        "intervals": {m: {k: interval(m, k) for k in BOOTSTRAP_METRICS} for m in names},
        "differences": {},
    }
    def differences(against: str) -> dict:
        out = {}
        for m in names:
            if m == against:
                continue
            diff = {}
            for key in BOOTSTRAP_METRICS:
                estimate = estimates[m][key] - estimates[against][key]
                if resamples:
                    diff[key] = _interval(rounds[m][key] - rounds[against][key], estimate,
                                          confidence, (-1.0, 1.0))
                else:
                    diff[key] = {"estimate": estimate, "low": estimate, "high": estimate}
            out[m] = diff
        return out

    if reference is not None:
        result["differences"] = differences(reference)
    if versus is not None:
        result["versus"] = {"model": versus, "differences": differences(versus)}
    return result
