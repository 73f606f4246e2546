"""The `gate` stage: bless a model only if it clearly beats the trivial baselines.

A candidate must beat every baseline (predicting no genre, predicting the most frequent
genre) by an absolute margin on micro-F1 and on mAP, and have no higher Hamming loss
than predicting no genre. Margins are absolute (a relative margin over a baseline near
zero is NaN or infinite), a rule whose metric is missing or NaN fails (fail closed), and
every rule's value, threshold and outcome is written to the blessing file, so a rejection
says which rule failed. Of the models that pass, the one with the highest mAP is blessed.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

from postergenre.atomic import write_json
from postergenre.metrics import BASELINES, NULL_MODEL

log = logging.getLogger(__name__)
BLESSED = "blessed"
REJECTED = "rejected"


def _number(metrics: Mapping, key: str) -> float:
    value = metrics.get(key)
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def _rule(model: str, name: str, value: float, threshold: float, higher_is_better: bool,
          baseline: str) -> dict:
    passed = (not math.isnan(value) and not math.isnan(threshold)
              and (value >= threshold if higher_is_better else value <= threshold))
    return {"model": model, "rule": name, "value": None if math.isnan(value) else value,
            "threshold": None if math.isnan(threshold) else threshold,
            "comparison": ">=" if higher_is_better else "<=", "baseline": baseline,
            "passed": bool(passed)}


def evaluate_rules(metrics: Mapping[str, Mapping], min_f1_micro_margin: float,
                   min_map_margin: float, max_hamming_loss_increase: float) -> list[dict]:
    """Every rule for every candidate model (everything in `metrics` but the baselines).

    A baseline missing from `metrics` still gets its rules, which then fail (fail closed).
    """
    null = metrics.get(NULL_MODEL, {})
    rules = []
    for model, values in metrics.items():
        if model in BASELINES:
            continue
        for baseline in BASELINES:
            reference = metrics.get(baseline, {})
            rules += [
                _rule(model, f"f1_micro_over_{baseline}", _number(values, "f1_micro"),
                      _number(reference, "f1_micro") + min_f1_micro_margin, True, baseline),
                _rule(model, f"map_macro_over_{baseline}", _number(values, "map_macro"),
                      _number(reference, "map_macro") + min_map_margin, True, baseline),
            ]
        rules.append(
            _rule(model, "hamming_loss_not_above_null", _number(values, "hamming_loss"),
                  _number(null, "hamming_loss") + max_hamming_loss_increase, False, NULL_MODEL))
    return rules


def gate(
    metrics_path: str | os.PathLike[str],
    blessing_path: str | os.PathLike[str],
    min_f1_micro_margin: float = 0.05,
    min_map_margin: float = 0.05,
    max_hamming_loss_increase: float = 0.0,
) -> str:
    """Decide `blessed` or `rejected`, write the blessing file, and return the decision."""
    path = Path(metrics_path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path} (run evaluate first)")
    metrics = json.loads(path.read_text())
    if not any(model not in BASELINES for model in metrics):
        raise ValueError(f"{path}: no model to gate, only baselines {sorted(metrics)}")
    rules = evaluate_rules(metrics, min_f1_micro_margin, min_map_margin,
                           max_hamming_loss_increase)
    candidates = [m for m in metrics if m not in BASELINES]
    passing = [m for m in candidates if all(r["passed"] for r in rules if r["model"] == m)]
    chosen = max(passing, key=lambda m: (_number(metrics[m], "map_macro"),
                                         _number(metrics[m], "f1_micro")), default=None)
    failed = [f"{r['model']}: {r['rule']} failed ({r['value']} {r['comparison']} "
              f"{r['threshold']} is false)" for r in rules if not r["passed"]]
    blessing = {
        "decision": BLESSED if chosen else REJECTED,
        "model": chosen,
        "metrics": metrics.get(chosen) if chosen else None,
        "failed_rules": failed,
        "rules": rules,
        "settings": {"min_f1_micro_margin": min_f1_micro_margin,
                     "min_map_margin": min_map_margin,
                     "max_hamming_loss_increase": max_hamming_loss_increase},
    }
    write_json(blessing_path, blessing)
    if chosen:
        log.info("gate: blessed %s", chosen)
    else:
        log.warning("gate: rejected every model: %s", "; ".join(failed))
    return blessing["decision"]
