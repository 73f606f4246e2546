"""The `gate` stage: bless a model only if it clearly beats the baselines and does not
fall behind the last blessed model (at least what TFX's Evaluator checks).

Rules, each recorded with its value, threshold, comparison and the baseline used:
- absolute margins over every baseline (`null`, `most_frequent`, `top3`) on micro-F1
  and mAP (a relative margin over a baseline near zero is NaN or infinite);
- Hamming loss not above the top3 baseline's (not the null model's: on sparse labels
  predicting no genre has the lowest Hamming loss of all), and predicted genres per movie
  within a band around the true number (neither none nor every genre);
- value floors on micro-F1 and mAP;
- against the last blessed model (re-scored on this test split by evaluate): the lower
  bound of the paired bootstrap interval of (candidate - blessed) not below -epsilon,
  on micro-F1 and mAP; when the registry had no blessed model, one explicit, recorded
  `first_blessing` pass;
- optional per-genre AP floors, and an optional maximum per-genre AP drop against the
  last blessed model.
A rule whose metric is missing or NaN fails (fail closed). Of the models that pass
every rule, the one with the highest mAP is blessed.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

from postergenre.atomic import write_json
from postergenre.configs import GateConfig
from postergenre.evaluation.layout import (
    BLESSING_FILE,
    BOOTSTRAP_FILE,
    DECIDED_REPORT_FILE,
    METRICS_FILE,
    PER_GENRE_FILE,
    REPORT_FILE,
    THRESHOLDS_FILE,
)
from postergenre.evaluation.metrics import BASELINES, LAST_BLESSED, NOT_CANDIDATES, TOP3
from postergenre.typed_config import to_mapping

log = logging.getLogger(__name__)
BLESSED = "blessed"
REJECTED = "rejected"
GATING_METRICS = ("f1_micro", "map_macro")


def _number(metrics: Mapping | None, key: str) -> float:
    value = (metrics or {}).get(key)
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def _rule(model: str, name: str, value: float, threshold: float, higher_is_better: bool,
          baseline: str | None, note: str | None = None) -> dict:
    passed = (not math.isnan(value) and not math.isnan(threshold)
              and (value >= threshold if higher_is_better else value <= threshold))
    rule = {"model": model, "rule": name, "value": None if math.isnan(value) else value,
            "threshold": None if math.isnan(threshold) else threshold,
            "comparison": ">=" if higher_is_better else "<=", "baseline": baseline,
            "passed": bool(passed)}
    if note:
        rule["note"] = note
    return rule


def _baseline_rules(model: str, values: Mapping, metrics: Mapping[str, Mapping],
                    settings: Mapping) -> list[dict]:
    rules = []
    for baseline in BASELINES:
        reference = metrics.get(baseline)  # a missing baseline gives NaN: fail closed
        rules += [
            _rule(model, f"f1_micro_over_{baseline}", _number(values, "f1_micro"),
                  _number(reference, "f1_micro") + settings["min_f1_micro_margin"], True,
                  baseline),
            _rule(model, f"map_macro_over_{baseline}", _number(values, "map_macro"),
                  _number(reference, "map_macro") + settings["min_map_margin"], True, baseline),
        ]
    # Hamming loss against top3, not null: on sparse labels (11% positive) predicting no
    # genre has the lowest Hamming loss of all, a bound no useful model can meet.
    rules.append(_rule(model, "hamming_loss_not_above_top3", _number(values, "hamming_loss"),
                       _number(metrics.get(TOP3), "hamming_loss")
                       + settings["max_hamming_loss_increase"], False, TOP3))
    # As many genres per movie as movies have, within a band: neither none nor all.
    predicted, true = _number(values, "genres_per_movie"), _number(values,
                                                                  "true_genres_per_movie")
    band = float(settings["genres_per_movie_band"])
    rules += [_rule(model, "genres_per_movie_at_least", predicted, true / band, True, None,
                    note=f"predicted genres per movie >= true ({true:.2f}) / {band}"),
              _rule(model, "genres_per_movie_at_most", predicted, true * band, False, None,
                    note=f"predicted genres per movie <= true ({true:.2f}) x {band}")]
    rules += [_rule(model, "f1_micro_floor", _number(values, "f1_micro"),
                    float(settings["min_f1_micro"]), True, None),
              _rule(model, "map_macro_floor", _number(values, "map_macro"),
                    float(settings["min_map_macro"]), True, None)]
    return rules


def _blessed_rules(model: str, metrics: Mapping, bootstrap: Mapping | None,
                   epsilon: float) -> list[dict]:
    """Not worse than the last blessed model beyond epsilon, on the bootstrap lower bound."""
    if LAST_BLESSED not in metrics:
        return [{"model": model, "rule": "first_blessing", "value": None, "threshold": None,
                 "comparison": None, "baseline": LAST_BLESSED, "passed": True,
                 "note": "the registry held no blessed model when evaluate ran: nothing to "
                         "compare with, so this rule passes (first run)"}]
    differences = ((bootstrap or {}).get("differences") or {}).get(model) or {}
    return [_rule(model, f"{metric}_vs_last_blessed",
                  _number(differences.get(metric), "low"), -float(epsilon), True, LAST_BLESSED,
                  note=f"lower bound of the paired bootstrap interval of "
                       f"({model} - last blessed) {metric}")
            for metric in GATING_METRICS]


def _genre_rules(model: str, per_genre: Mapping | None, genre_ap_floors: Mapping[str, float],
                 max_genre_ap_drop: float | None, has_blessed: bool) -> list[dict]:
    rules = []
    mine = (per_genre or {}).get(model) or {}
    for genre, floor in genre_ap_floors.items():
        rules.append(_rule(model, f"ap_floor_{genre}", _number(mine.get(genre), "ap"),
                           float(floor), True, None))
    if max_genre_ap_drop is not None and has_blessed:
        blessed = (per_genre or {}).get(LAST_BLESSED)
        if blessed is None:  # per-genre numbers missing: one failing rule says so
            return [*rules, _rule(model, "genre_ap_drop_vs_last_blessed", math.nan,
                                  -max_genre_ap_drop, True, LAST_BLESSED,
                                  note="no per-genre metrics of the last blessed model")]
        for genre, row in blessed.items():
            if not row.get("support"):
                continue  # a genre absent from test has no AP for either model
            rules.append(_rule(model, f"ap_drop_{genre}_vs_last_blessed",
                               _number(mine.get(genre), "ap") - _number(row, "ap"),
                               -float(max_genre_ap_drop), True, LAST_BLESSED))
    return rules


def evaluate_rules(metrics: Mapping[str, Mapping], config: GateConfig | None = None, *,
                   bootstrap: Mapping | None = None,
                   per_genre: Mapping | None = None) -> list[dict]:
    """Every rule for every candidate model (everything in `metrics` but the baselines
    and the last blessed model). A missing baseline's rules fail (fail closed)."""
    config = config or GateConfig()
    settings = {"min_f1_micro_margin": config.min_f1_micro_margin,
                "min_map_margin": config.min_map_margin,
                "max_hamming_loss_increase": config.max_hamming_loss_increase,
                "genres_per_movie_band": config.genres_per_movie_band,
                "min_f1_micro": config.min_f1_micro, "min_map_macro": config.min_map_macro}
    # A negative maximum drop switches the per-genre regression rule off.
    max_genre_ap_drop = config.max_genre_ap_drop if config.max_genre_ap_drop >= 0 else None
    rules = []
    for model, values in metrics.items():
        if model in NOT_CANDIDATES:
            continue
        rules += _baseline_rules(model, values, metrics, settings)
        rules += _blessed_rules(model, metrics, bootstrap, config.epsilon)
        rules += _genre_rules(model, per_genre, config.genre_ap_floors, max_genre_ap_drop,
                              LAST_BLESSED in metrics)
    return rules


def _read(path: Path, what: str, *, required: bool = False) -> dict | None:
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{what} file not found: {path} (run evaluate first)")
        return None
    return json.loads(path.read_text())


def gate(
    evaluation_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: GateConfig | None = None,
) -> str:
    """Decide `blessed` or `rejected` from evaluate's folder, write BLESSING_FILE into
    `out_dir`, and return the decision. Where the folder holds evaluate's page, also write
    DECIDED_REPORT_FILE, the report a person reads: that page opening with this decision."""
    config = config or GateConfig()
    evaluation, out = Path(evaluation_dir), Path(out_dir)
    metrics_path = evaluation / METRICS_FILE
    metrics: dict = _read(metrics_path, "metrics", required=True) or {}
    per_genre = _read(evaluation / PER_GENRE_FILE, "per-genre metrics")
    bootstrap = _read(evaluation / BOOTSTRAP_FILE, "bootstrap")
    thresholds = _read(evaluation / THRESHOLDS_FILE, "thresholds")
    candidates = [m for m in metrics if m not in NOT_CANDIDATES]
    if not candidates:
        raise ValueError(f"{metrics_path}: no model to gate, only {sorted(metrics)}")
    settings = to_mapping(config)
    rules = evaluate_rules(metrics, config, bootstrap=bootstrap, per_genre=per_genre)
    passing = [m for m in candidates if all(r["passed"] for r in rules if r["model"] == m)]
    chosen = max(passing, key=lambda m: (_number(metrics[m], "map_macro"),
                                         _number(metrics[m], "f1_micro")), default=None)
    failed = [f"{r['model']}: {r['rule']} failed ({r['value']} {r['comparison']} "
              f"{r['threshold']} is false)" for r in rules if not r["passed"]]
    blessing = {
        "decision": BLESSED if chosen else REJECTED,
        "model": chosen,
        "metrics": metrics.get(chosen) if chosen else None,
        "thresholds": (thresholds or {}).get(chosen) if chosen else None,
        "compared_with": (bootstrap or {}).get("reference_entry"),
        # Every model against evaluate's reference model (e.g. the linear probe): reported,
        # not gated on.
        "versus": (bootstrap or {}).get("versus"),
        "failed_rules": failed,
        "rules": rules,
        "settings": settings,
    }
    write_json(out / BLESSING_FILE, blessing)
    if (evaluation / REPORT_FILE).is_file():
        from postergenre.evaluation.report import write_decided_report

        write_decided_report(evaluation / REPORT_FILE, blessing, out / DECIDED_REPORT_FILE)
    if chosen:
        log.info("gate: blessed %s", chosen)
    else:
        log.warning("gate: rejected every model: %s", "; ".join(failed))
    return str(blessing["decision"])
