"""What the `validate` stage tells people: offender listings, summary, metrics, Data Docs.

- `summary.json`: every rule with its policy, verdict and first offenders;
- the metrics JSON (DVC metrics / Kubeflow metrics): rows in / kept / rejected by reason,
  rows flagged per rule;
- the Data Docs HTML: great-expectations' rendering of the validation result, styled
  offline, each flagged rule shown by its policy (data_docs.py);
- the error message of a failed run, naming the file and the first offenders of each rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from postergenre.atomic import atomic_open
from postergenre.configs import ValidateConfig
from postergenre.data.labels import GROUP_COLUMN
from postergenre.validation.frame import LINE_COLUMN
from postergenre.validation.rules import RULES_BY_NAME, Severity
from postergenre.validation.suite import SUITE_NAME, RuleOutcome

# ValidateConfig's policy settings; every other field bounds the data (the summary's limits).
_POLICY_FIELDS = frozenset({"max_listed", "soft_rules", "warn_rules", "hard_rules",
                            "max_reject_fraction"})


def limits_of(config: ValidateConfig) -> dict[str, Any]:
    """The config's bounds on posters and the table, by name."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.name not in _POLICY_FIELDS}


def offender_entries(outcome: RuleOutcome, frame: pd.DataFrame, file_name: str) -> list[str]:
    """A sentence per offender; rows sharing a value are one sentence for grouped rules."""
    if outcome.table:
        return [f"{file_name}: {problem}" for problem in outcome.problems]
    rule = RULES_BY_NAME[outcome.name]
    by_line = frame.set_index(LINE_COLUMN, drop=False)
    if rule.grouped_by is not None:
        groups: dict[str, list[int]] = {}
        for line in outcome.lines:
            groups.setdefault(str(by_line.at[line, rule.grouped_by]), []).append(line)
        return [f"{file_name} {'line' if len(g) == 1 else 'lines'} "
                f"{', '.join(map(str, g))}: {rule.explain(by_line.loc[g[0]])}"
                for g in groups.values()]
    entries = []
    for line in outcome.lines:
        row = by_line.loc[line]
        who = f" ({row['imdb_id']})" if isinstance(row["imdb_id"], str) else ""
        entries.append(f"{file_name} line {line}{who}: {rule.explain(row)}")
    return entries


def describe_outcomes(outcomes: Sequence[RuleOutcome], frame: pd.DataFrame, labels_path: Path,
                      max_listed: int) -> list[str]:
    """Lines of an error message: each rule, its flagged count and first offenders."""
    parts = []
    for outcome in outcomes:
        parts.append(f"- {outcome.name} ({outcome.description}), {outcome.flagged} flagged:")
        if outcome.error is not None:
            parts.append(f"    great-expectations raised an error: {outcome.error}")
            continue
        entries = offender_entries(outcome, frame, labels_path.name)
        parts.extend(f"    {text}" for text in entries[:max_listed])
        if len(entries) > max_listed:
            parts.append(f"    ... and {len(entries) - max_listed} more")
    return parts


def failure_message(
    labels_path: Path, summary_path: Path, failed_hard: Sequence[RuleOutcome],
    outcomes: Sequence[RuleOutcome], frame: pd.DataFrame, rejected_rows: int,
    too_many_rejects: bool, config: ValidateConfig,
) -> str:
    """Why the run stopped: the hard rules that failed and/or too many soft rejects."""
    if failed_hard:
        rows = len({line for o in failed_hard for line in o.lines})
        noun = "rule" if len(failed_hard) == 1 else "rules"
        parts = [f"{labels_path}: {len(failed_hard)} validation {noun} failed, {rows} row(s) "
                 f"affected (details in {summary_path}):"]
    else:
        parts = [f"{labels_path}: validation failed (details in {summary_path}):"]
    parts += describe_outcomes(failed_hard, frame, labels_path, config.max_listed)
    if too_many_rejects:
        soft = [o for o in outcomes if o.severity == "soft" and o.lines]
        parts.append(f"- {rejected_rows} of {len(frame)} rows would be rejected by soft "
                     f"rules, more than max_reject_fraction={config.max_reject_fraction}:")
        parts += ["  " + text for text in describe_outcomes(soft, frame, labels_path,
                                                             config.max_listed)]
    return "\n".join(parts)


def summary_of(
    *, labels_path: Path, config: ValidateConfig, success: bool, rows_in: int, rows_kept: int,
    reject_counts: dict[str, int], frame: pd.DataFrame, outcomes: Sequence[RuleOutcome],
    skipped: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """summary.json: the run's verdict, every rule with its first offenders, what was skipped.

    On failure nothing is written, so nothing counts as kept or rejected.
    """
    max_listed = config.max_listed
    imdb_by_line = frame.set_index(LINE_COLUMN)["imdb_id"]
    return {
        "suite": SUITE_NAME,
        "labels": str(labels_path),
        "success": success,
        "rows_in": rows_in,
        "rows_kept": rows_kept if success else 0,
        "rows_rejected": sum(reject_counts.values()) if success else 0,
        "rejects": reject_counts if success else {},
        "limits": limits_of(config),
        "max_reject_fraction": config.max_reject_fraction,
        "near_duplicate_groups": int((frame[GROUP_COLUMN].value_counts() > 1).sum()),
        "expectations": [
            {
                "name": o.name,
                "description": o.description,
                "expectation": o.expectation,
                "severity": o.severity,
                "hard": o.severity == "hard",
                "success": o.success,
                "unexpected_count": o.flagged,
                "offending_lines": o.lines[:max_listed],
                "offending_imdb_ids": [imdb_by_line[n] if isinstance(imdb_by_line[n], str)
                                       else "" for n in o.lines[:max_listed]],
                **({"problems": o.problems[:max_listed]} if o.problems else {}),
                **({"error": o.error} if o.error is not None else {}),
            }
            for o in outcomes
        ],
        "skipped": [{"name": e["meta"]["rule"], "column": e["kwargs"]["column"],
                     "why": "column missing"} for e in skipped],
    }


def metrics_of(summary: dict[str, Any], reject_counts: dict[str, int],
               outcomes: Sequence[RuleOutcome]) -> dict[str, Any]:
    """The metrics JSON: counts only, so runs compare with `dvc metrics diff`.

    `rejects` holds what soft rules would reject even when the run failed (the summary's is
    empty then): it is what tells a broken crawl from a few bad posters.
    """
    return {
        "rows_in": summary["rows_in"],
        "rows_kept": summary["rows_kept"],
        "rows_rejected": summary["rows_rejected"],
        "rejects": reject_counts,
        "flagged": {o.name: o.flagged for o in outcomes},
        "near_duplicate_groups": summary["near_duplicate_groups"],
    }


def write_data_docs(result: Any, path: Path, severity: Mapping[str, Severity],
                    success: bool) -> None:
    """gx's Data Docs rendering of the validation result, as one HTML page that renders
    offline and shows each flagged rule by its policy (data_docs.py)."""
    from postergenre.validation.data_docs import render_data_docs

    html = render_data_docs(result, severity, success)
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(html)
