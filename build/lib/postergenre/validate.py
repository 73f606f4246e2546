"""The `validate` stage: check a poster data set with a great-expectations suite.

Input is a data set folder (`labels.csv` + the posters it names, see `labels.py`); output is a
folder with `summary.json`, `labels.csv` (the rows kept) and `rejects.csv` (rows moved aside,
with a `reason`). The rules run as a real great-expectations 1.x `ExpectationSuite` on a pandas
frame built from the labels table plus derived columns (genre count, unknown genres, whether
the poster file exists), so the same suite can later be published as data docs or run in a
gx checkpoint.

Every rule at this level is *hard*: if any fails, the summary is still written (so a user can
read what went wrong) and `DataValidationError` is raised naming each offending row by its
CSV line number and imdb_id. Soft rules (a later step) move rows to `rejects.csv` instead.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from postergenre.atomic import write_json
from postergenre.genres import SEPARATOR, parse_genres, unknown_genres
from postergenre.labels import LABELS_FILE, read_labels, write_table

# gx phones home on import and on context creation unless told not to; the cluster and CI
# have no internet, so a missing setting would mean timeouts and log noise, not data.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation

SUITE_NAME = "postergenre_labels"
SUMMARY_FILE = "summary.json"
REJECTS_FILE = "rejects.csv"
REASON_COLUMN = "reason"
# The validation frame's row key: the labels.csv line a row starts on. gx reports offenders by
# this column (`unexpected_index_column_names`), which stays unique even when imdb_id is empty
# or duplicated.
LINE_COLUMN = "line"


class DataValidationError(ValueError):
    """A labels table broke a hard rule; the message names the file and the offending rows."""


@dataclass(frozen=True)
class Rule:
    """One expectation of the suite and how to explain its offenders to a person.

    `hard` rules fail the stage; soft rules (none yet) move their offenders to rejects.csv
    with `reason` = `name`.
    """

    name: str
    description: str
    expectation: Callable[[], Expectation]  # a fresh gx object per suite (gx sets its id)
    explain: Callable[[pd.Series], str]  # validation-frame row -> "no genre", ...
    hard: bool = True
    # Rules like uniqueness are about a value shared by several rows: list them once, as
    # "lines 3, 9: duplicate imdb_id 'tt1'", instead of once per row.
    group_by_value: bool = False


def _expectations() -> Any:
    """Import gx lazily: it takes seconds, and the CLI imports this module for --help too."""
    import great_expectations.expectations as gxe

    return gxe


def _quote_list(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)


def _explain_unknown(row: pd.Series) -> str:
    names = row["unknown_genres"].split(SEPARATOR)
    noun = "genre" if len(names) == 1 else "genres"
    return f"unknown {noun} {_quote_list(names)}"


def _explain_poster(row: pd.Series) -> str:
    if not row["poster"].strip():
        return "empty poster path"
    return f"poster file not found: {row['poster']}"


RULES: tuple[Rule, ...] = (
    Rule(
        name="imdb_id_present",
        description="every row has an imdb_id",
        expectation=lambda: _expectations().ExpectColumnValuesToNotBeNull(column="imdb_id"),
        explain=lambda row: "empty imdb_id",
    ),
    Rule(
        name="imdb_id_unique",
        description="imdb_id is unique",
        # Empty ids are null in the validation frame, and gx skips nulls here, so a blank id
        # is reported once (as missing) rather than also as a duplicate of every other blank.
        expectation=lambda: _expectations().ExpectColumnValuesToBeUnique(column="imdb_id"),
        explain=lambda row: f"duplicate imdb_id {row['imdb_id']!r}",
        group_by_value=True,
    ),
    Rule(
        name="genres_known",
        description="every genre is in the 19-genre vocabulary",
        expectation=lambda: _expectations().ExpectColumnValuesToBeInSet(
            column="unknown_genres", value_set=[""]
        ),
        explain=_explain_unknown,
    ),
    Rule(
        name="has_genre",
        description="every movie has at least one genre",
        expectation=lambda: _expectations().ExpectColumnValuesToBeBetween(
            column="genre_count", min_value=1
        ),
        explain=lambda row: "no genre",
    ),
    Rule(
        name="poster_exists",
        description="every poster file is present",
        expectation=lambda: _expectations().ExpectColumnValuesToBeInSet(
            column="poster_exists", value_set=[True]
        ),
        explain=_explain_poster,
    ),
)


def _record_lines(path: Path, rows: int) -> list[int]:
    """The line each data record starts on (header = line 1), as an editor shows it.

    Not simply index + 2: a quoted title may span lines, and pandas skips blank lines. If the
    csv module and pandas disagree on the record count, fall back to index + 2.
    """
    fallback = list(range(2, rows + 2))
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            starts: list[int] = []
            previous_end = 0
            for record in reader:
                if record:  # blank lines come back as [] and are skipped by pandas too
                    starts.append(previous_end + 1)
                previous_end = reader.line_num
    except (OSError, UnicodeDecodeError, csv.Error):
        return fallback
    starts = starts[1:]  # the header
    return starts if len(starts) == rows else fallback


def _validation_frame(labels: pd.DataFrame, data_dir: Path, lines: list[int]) -> pd.DataFrame:
    """The columns the suite checks: the raw cells plus what the rules derive from them."""
    genres = [parse_genres(cell) for cell in labels["genres"]]
    imdb_ids = [cell.strip() or None for cell in labels["imdb_id"]]
    return pd.DataFrame(
        {
            LINE_COLUMN: pd.Series(lines, dtype="int64"),
            "imdb_id": pd.Series(imdb_ids, dtype=object),
            "genres": labels["genres"].to_numpy(dtype=object),
            "genre_count": pd.Series([len(g) for g in genres], dtype="int64"),
            "unknown_genres": pd.Series(
                [SEPARATOR.join(unknown_genres(g)) for g in genres], dtype=object
            ),
            "poster": labels["poster"].to_numpy(dtype=object),
            "poster_exists": pd.Series(
                [bool(p.strip()) and (data_dir / p).is_file() for p in labels["poster"]],
                dtype=bool,
            ),
        }
    )


def _run_suite(frame: pd.DataFrame, rules: Sequence[Rule]) -> dict[str, Any]:
    """Run the rules as one gx suite on `frame`; return gx's result per rule name."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # gx logs its own set-up ("created temporary directory ...") at INFO on import; the
    # stage reports what matters itself.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # One in-memory context per call: creating it is cheap (ms); importing gx is the slow part.
    context = gx.get_context(mode="ephemeral")
    # gx 1.x draws a tqdm "Calculating Metrics" bar on stderr for every run unless disabled.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = (
        context.data_sources.add_pandas("labels")
        .add_dataframe_asset("labels")
        .add_batch_definition_whole_dataframe("whole_table")
    )
    suite = context.suites.add(
        gx.ExpectationSuite(
            name=SUITE_NAME,
            # gx returns results in its own order (not the suite's): the rule name in `meta`
            # is how a result is matched back to its rule.
            expectations=[_with_rule_meta(rule) for rule in rules],
        )
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=SUITE_NAME, data=batch, suite=suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": frame},
        # COMPLETE lists every offender (not a 20-row sample); the line column identifies them.
        result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": [LINE_COLUMN],
        },
    )
    return {r.expectation_config.meta["rule"]: r for r in result.results}


def _with_rule_meta(rule: Rule) -> Expectation:
    expectation = rule.expectation()
    expectation.meta = {"rule": rule.name, "description": rule.description}
    return expectation


def _exception_message(result: Any) -> str | None:
    """gx's error text if the expectation crashed (not: found offenders), else None."""
    info = result.exception_info or {}
    # Flat when the expectation itself raised; keyed by metric id when a metric did.
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            return str(entry.get("exception_message") or "unknown error")
    return None


@dataclass
class _Outcome:
    rule: Rule
    success: bool
    offender_lines: list[int]  # validation-frame line numbers, in file order
    error: str | None = None


def _outcome(rule: Rule, result: Any) -> _Outcome:
    error = _exception_message(result)
    lines = sorted(
        int(entry[LINE_COLUMN]) for entry in (result.result or {}).get("unexpected_index_list", [])
    )
    return _Outcome(rule, bool(result.success) and error is None, lines, error)


def _offender_entries(
    outcome: _Outcome, frame: pd.DataFrame, file_name: str
) -> list[tuple[list[int], str]]:
    """(lines, sentence) per offender; rows sharing a value are one entry for grouped rules."""
    by_line = frame.set_index(LINE_COLUMN, drop=False)
    if outcome.rule.group_by_value:
        groups: dict[str, list[int]] = {}
        for line in outcome.offender_lines:
            groups.setdefault(str(by_line.at[line, "imdb_id"]), []).append(line)
        entries = []
        for group in groups.values():
            where = ", ".join(str(n) for n in group)
            label = "line" if len(group) == 1 else "lines"
            text = outcome.rule.explain(by_line.loc[group[0]])
            entries.append((group, f"{file_name} {label} {where}: {text}"))
        return entries
    entries = []
    for line in outcome.offender_lines:
        row = by_line.loc[line]
        imdb_id = row["imdb_id"]
        who = f" ({imdb_id})" if isinstance(imdb_id, str) else ""
        entries.append(([line], f"{file_name} line {line}{who}: {outcome.rule.explain(row)}"))
    return entries


def _error_message(
    labels_path: Path,
    summary_path: Path,
    failed: list[_Outcome],
    frame: pd.DataFrame,
    max_listed: int,
) -> str:
    rows = len({line for outcome in failed for line in outcome.offender_lines})
    noun = "rule" if len(failed) == 1 else "rules"
    parts = [
        f"{labels_path}: {len(failed)} validation {noun} failed, {rows} row(s) affected "
        f"(details in {summary_path}):"
    ]
    for outcome in failed:
        parts.append(f"- {outcome.rule.name} ({outcome.rule.description}):")
        if outcome.error is not None:
            parts.append(f"    great-expectations raised an error: {outcome.error}")
            continue
        entries = _offender_entries(outcome, frame, labels_path.name)
        parts.extend(f"    {text}" for _, text in entries[:max_listed])
        if len(entries) > max_listed:
            parts.append(f"    ... and {len(entries) - max_listed} more")
    return "\n".join(parts)


def validate_dataset(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    max_listed: int = 10,
) -> dict[str, Any]:
    """Validate `data_dir/labels.csv` and its posters; write the results to `out_dir`.

    Writes `summary.json` always, and `labels.csv` (rows kept, input columns) plus
    `rejects.csv` (input columns + `reason`) when no hard rule fails. Returns the summary.

    Raises:
        FileNotFoundError: `data_dir/labels.csv` does not exist.
        DataValidationError: the table cannot be read, lacks a required column, or breaks a
            hard rule; the message names the file and the first `max_listed` offenders of
            each failed rule (CSV line, imdb_id, bad value).
    """
    data_dir = Path(data_dir)
    out_dir = Path(out_dir)
    labels_path = data_dir / LABELS_FILE
    if out_dir.resolve() == data_dir.resolve():
        # The outputs would overwrite the input table (or, on failure, leave it next to a
        # summary that says it is bad); the stage must never edit its input.
        raise ValueError(f"out_dir must differ from data_dir: {out_dir}")

    try:
        labels = read_labels(labels_path)
    except FileNotFoundError:
        raise
    except ValueError as exc:  # missing column, or pandas could not parse the file
        message = str(exc)
        if str(labels_path) not in message:
            message = f"{labels_path}: cannot read labels table: {message}"
        raise DataValidationError(message) from exc

    frame = _validation_frame(labels, data_dir, _record_lines(labels_path, len(labels)))
    results = _run_suite(frame, RULES)
    outcomes = [_outcome(rule, results[rule.name]) for rule in RULES]

    failed_hard = [o for o in outcomes if o.rule.hard and not o.success]
    success = not failed_hard

    # Soft-rule offenders move to rejects.csv; a row breaking several soft rules is rejected
    # once, for the first of them.
    reasons: dict[int, str] = {}
    for outcome in outcomes:
        if not outcome.rule.hard:
            for line in outcome.offender_lines:
                reasons.setdefault(line, outcome.rule.name)
    line_of_row = frame[LINE_COLUMN].to_numpy()
    rejected = pd.Series([line in reasons for line in line_of_row], index=labels.index, dtype=bool)
    kept = labels[~rejected]
    rejects = labels[rejected].assign(
        **{REASON_COLUMN: [reasons[line] for line in line_of_row[rejected.to_numpy()]]}
    )
    reject_counts: dict[str, int] = {}
    for reason in rejects[REASON_COLUMN]:
        reject_counts[reason] = reject_counts.get(reason, 0) + 1

    by_line = frame.set_index(LINE_COLUMN)["imdb_id"]
    summary: dict[str, Any] = {
        "suite": SUITE_NAME,
        "labels": str(labels_path),
        "success": success,
        "rows_in": len(labels),
        # Nothing is written on failure, so nothing is kept.
        "rows_kept": len(kept) if success else 0,
        "rows_rejected": len(rejects) if success else 0,
        "rejects": reject_counts if success else {},
        "expectations": [
            {
                "name": o.rule.name,
                "description": o.rule.description,
                "expectation": results[o.rule.name].expectation_config.type,
                "hard": o.rule.hard,
                "success": o.success,
                "unexpected_count": len(o.offender_lines),
                "offending_lines": o.offender_lines[:max_listed],
                "offending_imdb_ids": [
                    by_line[line] if isinstance(by_line[line], str) else ""
                    for line in o.offender_lines[:max_listed]
                ],
                **({"error": o.error} if o.error is not None else {}),
            }
            for o in outcomes
        ],
    }

    summary_path = out_dir / SUMMARY_FILE
    if not success:
        # Remove outputs of an earlier run, so nothing downstream picks up a table that
        # this run just found bad.
        for name in (LABELS_FILE, REJECTS_FILE):
            (out_dir / name).unlink(missing_ok=True)
        write_json(summary_path, summary)
        raise DataValidationError(
            _error_message(labels_path, summary_path, failed_hard, frame, max_listed)
        )

    write_table(kept, out_dir / LABELS_FILE)
    write_table(rejects, out_dir / REJECTS_FILE)
    # Summary last: its presence means the stage finished.
    write_json(summary_path, summary)
    return summary
