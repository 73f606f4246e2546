"""The `validate` stage: check a poster data set with a great-expectations suite.

Input is a data set folder (`labels.csv` + the posters it names, see `labels.py`). Each
poster is measured (`probe.py`), the table and the measurements become one frame
(`validation_frame.py`), the repo's suite runs on it (`validation_suite.py`, bounds from
the ValidateConfig), and each rule's verdict meets its policy (`validation_rules.py`).

Policy: every rule is `hard` (the stage stops, naming the first offenders and their count),
`soft` (its offenders move to `rejects.csv` with the rule as `reason`, the run goes on) or
`warn` (reported, nothing moves: near-duplicates are kept and `split` keeps each group in one
split). Soft rejects above `max_reject_fraction` of the rows stop the stage too: a few
unreadable posters are noise, many are a broken crawl. Nothing is dropped without a row in
rejects: `rows_kept + rows_rejected == rows_in`.

Outputs (into `out_dir`): `labels.csv` (kept rows, input columns + `phash`,
`duplicate_group`), `rejects.csv` (input columns + `reason`), `summary.json` (every rule and
its offenders), plus the metrics JSON (rows in / kept / rejected by reason / flagged by
rule) and the Data Docs HTML (gx's rendering of the validation result); see
`validation_report.py`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from postergenre.atomic import write_json
from postergenre.configs import ValidateConfig
from postergenre.data.labels import (
    GROUP_COLUMN,
    LABELS_FILE,
    PHASH_COLUMN,
    REASON_COLUMN,
    REJECTS_FILE,
    read_labels,
    write_table,
)
from postergenre.data.probe import probe_posters
from postergenre.validation.frame import LINE_COLUMN, record_lines, validation_frame
from postergenre.validation.report import (
    failure_message,
    metrics_of,
    summary_of,
    write_data_docs,
)
from postergenre.validation.rules import resolve_severity
from postergenre.validation.suite import (
    RuleOutcome,
    load_suite_config,
    rule_outcomes,
    run_suite,
    suite_parameters,
)

SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.json"
DOCS_FILE = "data_docs.html"


class DataValidationError(ValueError):
    """A data set broke a hard rule; the message names the file and the offending rows."""


def _read_table(labels_path: Path) -> pd.DataFrame:
    try:
        return read_labels(labels_path)
    except FileNotFoundError:
        raise
    except ValueError as exc:  # missing required column, or pandas could not parse the file
        message = str(exc)
        if str(labels_path) not in message:
            message = f"{labels_path}: cannot read labels table: {message}"
        raise DataValidationError(message) from exc


def _reject_reasons(outcomes: list[RuleOutcome]) -> dict[int, str]:
    """Line -> the soft rule that rejects it. A row breaking several soft rules is rejected
    once, for the first of them (rules run cheapest-check first, so that is the cause)."""
    reasons: dict[int, str] = {}
    for outcome in outcomes:
        if outcome.severity == "soft" and not outcome.table:
            for line in outcome.lines:
                reasons.setdefault(line, outcome.name)
    return reasons


def validate_dataset(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: ValidateConfig | None = None,
    *,
    metrics_path: str | os.PathLike[str] | None = None,
    docs_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Validate `data_dir/labels.csv` and its posters; write the results to `out_dir`.

    `config` (default: `ValidateConfig()`) holds the suite's bounds and each rule's policy.
    Writes `summary.json`, the metrics JSON (default `out_dir/metrics.json`) and the Data
    Docs HTML (default `out_dir/data_docs.html`) always, and `labels.csv` plus
    `rejects.csv` when no hard rule fails. Returns the summary.

    Raises:
        FileNotFoundError: `data_dir/labels.csv` does not exist.
        ValueError: the config names an unknown rule, or `out_dir` is `data_dir`.
        DataValidationError: the table cannot be read, lacks a required column, breaks a hard
            rule, or more than `max_reject_fraction` of its rows would be rejected; the
            message names the file and the first `max_listed` offenders of each rule.
    """
    config = config if config is not None else ValidateConfig()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    severity = resolve_severity(config)
    # The config checks its bounds when read from params; a config built in code is not.
    if not 0 <= config.max_reject_fraction <= 1:
        raise ValueError("max_reject_fraction must be in [0, 1], got "
                         f"{config.max_reject_fraction}")
    labels_path = data_dir / LABELS_FILE
    metrics_path = Path(metrics_path) if metrics_path else out_dir / METRICS_FILE
    docs_path = Path(docs_path) if docs_path else out_dir / DOCS_FILE
    if out_dir.resolve() == data_dir.resolve():
        # The outputs would overwrite the input table; the stage must never edit its input.
        raise ValueError(f"out_dir must differ from data_dir: {out_dir}")

    labels = _read_table(labels_path)
    probes = probe_posters(labels["poster"], data_dir, config.max_pixels,
                           config.max_file_bytes)
    frame = validation_frame(labels, probes, record_lines(labels_path, len(labels)),
                             config.duplicate_distance)
    suite = load_suite_config()
    parameters = suite_parameters(config, suite)
    result, skipped = run_suite(frame, parameters, suite)
    outcomes = rule_outcomes(result, severity, parameters)

    reasons = _reject_reasons(outcomes)
    failed_hard = [o for o in outcomes if not o.success and (
        o.severity == "hard" or o.error is not None)]
    rows_in = len(labels)
    too_many_rejects = rows_in > 0 and len(reasons) > config.max_reject_fraction * rows_in
    success = not failed_hard and not too_many_rejects

    rejected_mask = frame[LINE_COLUMN].isin(reasons).to_numpy()
    kept = labels[~rejected_mask].assign(
        **{PHASH_COLUMN: frame.loc[~rejected_mask, PHASH_COLUMN].to_numpy(),
           GROUP_COLUMN: frame.loc[~rejected_mask, GROUP_COLUMN].to_numpy()})
    rejects = labels[rejected_mask].assign(**{REASON_COLUMN: [
        reasons[line] for line in frame.loc[rejected_mask, LINE_COLUMN]]})
    reject_counts = {r: int(n) for r, n in rejects[REASON_COLUMN].value_counts().items()}

    summary = summary_of(labels_path=labels_path, config=config, success=success,
                         rows_in=rows_in, rows_kept=len(kept), reject_counts=reject_counts,
                         frame=frame, outcomes=outcomes, skipped=skipped)
    write_data_docs(result, docs_path, severity, success)
    write_json(metrics_path, metrics_of(summary, reject_counts, outcomes))
    for outcome in outcomes:
        if outcome.severity == "warn" and not outcome.success:
            logging.getLogger(__name__).warning(
                "%s: %s (%d flagged; warn only)", labels_path, outcome.name, outcome.flagged)

    summary_path = out_dir / SUMMARY_FILE
    if not success:
        # Remove outputs of an earlier run, so nothing downstream picks up a table that
        # this run just found bad.
        for name in (LABELS_FILE, REJECTS_FILE):
            (out_dir / name).unlink(missing_ok=True)
        write_json(summary_path, summary)
        raise DataValidationError(failure_message(
            labels_path, summary_path, failed_hard, outcomes, frame, len(reasons),
            too_many_rejects, config))

    write_table(kept, out_dir / LABELS_FILE)
    write_table(rejects, out_dir / REJECTS_FILE)
    # Summary last: its presence means the stage finished.
    write_json(summary_path, summary)
    return summary
