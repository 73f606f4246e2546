"""The `validate` stage: check a poster data set with a great-expectations suite.

Input is a data set folder (`labels.csv` + the posters it names, see `labels.py`). The rules
are a real great-expectations 1.x `ExpectationSuite` kept in the repo
(`resources/postergenre_suite.json`; its bounds are suite parameters filled from the stage's
arguments), run on one pandas frame per data set: the labels table's cells, plus what the
rules need derived from them (genre count, unknown genres, one count column per genre) and
from each poster file (`probe.py`: size, header dimensions, decodability, channels, a
perceptual hash and its near-duplicate group).

Policy: every rule is `hard` (the stage stops, naming the first offenders and their count),
`soft` (its offenders move to `rejects.csv` with the rule as `reason`, the run goes on) or
`warn` (reported, nothing moves: near-duplicates are kept and `split` keeps each group in one
split). Soft rejects above `max_reject_fraction` of the rows stop the stage too: a few
unreadable posters are noise, many are a broken crawl. Nothing is dropped without a row in
rejects: `rows_kept + rows_rejected == rows_in`.

Outputs (into `out_dir`): `labels.csv` (kept rows, input columns + `phash`,
`duplicate_group`), `rejects.csv` (input columns + `reason`), `summary.json` (every rule and
its offenders), plus the metrics JSON (rows in / kept / rejected by reason / flagged by
rule) and the Data Docs HTML (gx's rendering of the validation result).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from postergenre.atomic import atomic_open, write_json
from postergenre.genres import GENRES, SEPARATOR, encode_many, parse_genres, unknown_genres
from postergenre.labels import LABEL_COLUMNS, LABELS_FILE, read_labels, write_table
from postergenre.phash import hamming, near_duplicate_groups
from postergenre.probe import PosterProbe, probe_poster

# gx phones home on import and on context creation unless told not to; the cluster and CI
# have no internet, so a missing setting would mean timeouts and log noise, not data.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

SUITE_FILE = "postergenre_suite.json"
SUITE_NAME = "postergenre_labels"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.json"
DOCS_FILE = "data_docs.html"
REJECTS_FILE = "rejects.csv"
REASON_COLUMN = "reason"
PHASH_COLUMN = "phash"
GROUP_COLUMN = "duplicate_group"
# The validation frame's row key: the labels.csv line a row starts on. gx reports offenders by
# this column (`unexpected_index_column_names`), which stays unique even when imdb_id is empty
# or duplicated.
LINE_COLUMN = "line"
SEVERITIES = ("hard", "soft", "warn")


class DataValidationError(ValueError):
    """A data set broke a hard rule; the message names the file and the offending rows."""


@dataclass(frozen=True)
class Limits:
    """The suite's parameters: bounds a poster and the table must meet."""

    min_genre_support: int = 1
    min_width: int = 32
    min_height: int = 32
    min_aspect: float = 1.0  # height / width; posters are about 1.5
    max_aspect: float = 2.0
    min_file_bytes: int = 1
    max_file_bytes: int = 20_000_000
    max_pixels: int = 40_000_000  # 40 Mpx: far above any poster, far below a 20000^2 bomb
    duplicate_distance: int = 4  # pHash bits; -1 switches near-duplicate search off


# Rules whose offenders are rows of the table, and their severity unless told otherwise.
DEFAULT_SEVERITY: dict[str, str] = {
    "columns_expected": "hard",
    "imdb_id_present": "hard",
    "imdb_id_unique": "hard",
    "imdb_id_format": "hard",
    "tmdb_id_numeric": "hard",
    "movielens_id_numeric": "hard",
    "genres_known": "hard",
    "has_genre": "hard",
    "genre_support": "hard",
    "poster_exists": "soft",
    "poster_file_size": "soft",
    "poster_pixels": "soft",
    "poster_decodes": "soft",
    "poster_channels": "soft",
    "poster_min_width": "soft",
    "poster_min_height": "soft",
    "poster_aspect": "soft",
    "poster_near_duplicate": "warn",
}
# Rules about the whole table: no row can be rejected for them, so soft means warn.
TABLE_RULES = frozenset({"columns_expected", "genre_support"})


def _quote_list(values: Iterable[str]) -> str:
    return ", ".join(repr(v) for v in values)


def _explain_unknown(row: pd.Series) -> str:
    names = row["unknown_genres"].split(SEPARATOR)
    return f"unknown {'genre' if len(names) == 1 else 'genres'} {_quote_list(names)}"


def _explain_poster(row: pd.Series) -> str:
    if not str(row["poster"]).strip():
        return "empty poster path"
    return f"poster file not found: {row['poster']}"


def _poster_problem(row: pd.Series) -> str:
    return f"poster {row['poster']}: {row['problem']}"


# How to say, for one offending row of the validation frame, what is wrong with it.
EXPLAIN: dict[str, Callable[[pd.Series], str]] = {
    "imdb_id_present": lambda row: "empty imdb_id",
    "imdb_id_unique": lambda row: f"duplicate imdb_id {row['imdb_id']!r}",
    "imdb_id_format": lambda row: f"malformed imdb_id {row['imdb_id']!r}",
    "tmdb_id_numeric": lambda row: f"tmdb_id {row['tmdb_id']!r} is not an integer",
    "movielens_id_numeric": lambda row: f"movielens_id {row['movielens_id']!r} is not an integer",
    "genres_known": _explain_unknown,
    "has_genre": lambda row: "no genre",
    "poster_exists": _explain_poster,
    "poster_file_size": lambda row: f"poster {row['poster']}: {int(row['file_size'])} bytes",
    "poster_pixels": _poster_problem,
    "poster_decodes": _poster_problem,
    "poster_channels": _poster_problem,
    "poster_min_width": lambda row: f"poster {row['poster']}: {int(row['width'])} px wide",
    "poster_min_height": lambda row: f"poster {row['poster']}: {int(row['height'])} px high",
    "poster_aspect": lambda row: f"poster {row['poster']}: height/width {row['aspect']:.2f}",
    "poster_near_duplicate": lambda row: f"poster {row['poster']} is a near-duplicate of "
    f"{row['duplicate_of']} ({row['duplicate_detail']})",
}
# Rules whose offenders share one value: list them once ("lines 3, 9: duplicate imdb_id").
GROUPED = frozenset({"imdb_id_unique"})


def load_suite_config() -> dict[str, Any]:
    """The suite as kept in the repo (JSON: name, expectations with `$PARAMETER` bounds)."""
    text = resources.files("postergenre").joinpath("resources", SUITE_FILE).read_text("utf-8")
    return json.loads(text)


def resolve_severity(
    soft_rules: Sequence[str] | None = None, warn_rules: Sequence[str] | None = None,
    hard_rules: Sequence[str] | None = None,
) -> dict[str, str]:
    """Default severities, with the named rules made soft / warn / hard (others as default)."""
    severity = dict(DEFAULT_SEVERITY)
    for level, names in (("soft", soft_rules), ("warn", warn_rules), ("hard", hard_rules)):
        for name in names or ():
            if name not in severity:
                raise ValueError(f"{level}_rules: unknown rule {name!r}; rules: "
                                 f"{', '.join(severity)}")
            severity[name] = level
    return severity


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


def _probe_all(labels: pd.DataFrame, data_dir: Path, limits: Limits) -> list[PosterProbe]:
    def one(cell: str) -> PosterProbe:
        if not cell.strip():
            return PosterProbe(exists=False, problem="empty poster path")
        return probe_poster(data_dir / cell, limits.max_pixels)

    # OpenCV and file reads release the GIL: threads use every core without pickling images.
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 1)) as pool:
        return list(tqdm(pool.map(one, labels["poster"], chunksize=32), total=len(labels),
                         desc="validate posters", unit="poster", disable=None))


def _nullable(values: Iterable[Any], dtype: str = "object") -> pd.Series:
    """A column where None stays None: gx's column rules skip nulls (not measured)."""
    return pd.Series(list(values), dtype=dtype)


def _validation_frame(
    labels: pd.DataFrame, probes: list[PosterProbe], lines: list[int], limits: Limits
) -> pd.DataFrame:
    """The columns the suite checks: the raw cells plus what the rules derive from them."""
    genres = [parse_genres(cell) for cell in labels["genres"]]
    known = [[g for g in row if not unknown_genres([g])] for row in genres]
    counts = encode_many(SEPARATOR.join(row) for row in known).astype("int64")
    hashes = [int(p.phash, 16) if p.phash else None for p in probes]
    groups = near_duplicate_groups(hashes, limits.duplicate_distance)
    imdb_ids = [cell.strip() or None for cell in labels["imdb_id"]]
    duplicate_of, detail = [], []
    for i, group in enumerate(groups):
        if group == i:
            duplicate_of.append("")
            detail.append("")
        else:
            first = imdb_ids[group] or f"line {lines[group]}"
            duplicate_of.append(first)
            detail.append(f"line {lines[group]}, Hamming distance "
                          f"{hamming(hashes[i], hashes[group])} bits")
    frame = pd.DataFrame({
        LINE_COLUMN: pd.Series(lines, dtype="int64"),
        **{c: labels[c].to_numpy(dtype=object) for c in labels.columns if c in LABEL_COLUMNS},
    })
    frame["imdb_id"] = _nullable(imdb_ids)
    frame = frame.assign(
        genre_count=pd.Series([len(g) for g in genres], dtype="int64"),
        unknown_genres=_nullable(SEPARATOR.join(unknown_genres(g)) for g in genres),
        poster_exists=pd.Series([p.exists for p in probes], dtype=bool),
        file_size=_nullable((p.file_size for p in probes), "Int64"),
        pixels=_nullable((p.pixels for p in probes), "Int64"),
        width=_nullable((p.width for p in probes), "Int64"),
        height=_nullable((p.height for p in probes), "Int64"),
        aspect=_nullable((p.height / p.width if p.width else None for p in probes), "float64"),
        decodes=_nullable(p.decodes for p in probes),
        channels=_nullable((p.channels for p in probes), "Int64"),
        problem=_nullable(p.problem for p in probes),
        phash=_nullable(p.phash or "" for p in probes),
        duplicate_group=_nullable(imdb_ids[g] or f"line-{lines[g]}" for g in groups),
        duplicate_of=_nullable(duplicate_of),
        duplicate_detail=_nullable(detail),
        **{f"genre_{g}": counts[:, i] for i, g in enumerate(GENRES)},
    )
    return frame


def _suite_parameters(limits: Limits) -> dict[str, Any]:
    return {k: v for k, v in vars(limits).items() if k != "duplicate_distance"}


def _run_suite(frame: pd.DataFrame, limits: Limits) -> tuple[Any, list[dict[str, Any]]]:
    """Run the repo's suite on `frame`; return gx's result and the expectations skipped.

    Expectations on a column the table lacks (an optional id column) are skipped: the
    `columns_expected` rule reports the missing column once, instead of one crash per rule.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # gx logs its own set-up at INFO on import; the stage reports what matters itself.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    config = load_suite_config()
    run, skipped = [], []
    for expectation in config["expectations"]:
        column = expectation["kwargs"].get("column")
        (skipped if column is not None and column not in frame.columns else run).append(
            expectation)
    # One in-memory context per call: creating it is cheap (ms); importing gx is the slow part.
    context = gx.get_context(mode="ephemeral")
    # gx 1.x draws a tqdm "Calculating Metrics" bar on stderr for every run unless disabled.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = (context.data_sources.add_pandas("labels").add_dataframe_asset("labels")
             .add_batch_definition_whole_dataframe("whole_table"))
    suite = context.suites.add(gx.ExpectationSuite(name=config["name"], expectations=run,
                                                   meta=config.get("meta")))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=config["name"], data=batch, suite=suite))
    result = definition.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=_suite_parameters(limits),
        # COMPLETE lists every offender (not a 20-row sample); the line column identifies them.
        result_format={"result_format": "COMPLETE",
                       "unexpected_index_column_names": [LINE_COLUMN]},
    )
    return result, skipped


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
    """One rule's verdict, gathered from its expectation(s)."""

    name: str
    description: str
    severity: str
    expectation: str
    success: bool = True
    offender_lines: list[int] | None = None  # row rules: lines in file order
    problems: list[str] | None = None  # table rules: one sentence per problem
    error: str | None = None

    @property
    def lines(self) -> list[int]:
        return self.offender_lines or []

    @property
    def flagged(self) -> int:
        return len(self.lines) if self.name not in TABLE_RULES else len(self.problems or [])


def _table_problem(name: str, result: Any, meta: dict[str, Any], limits: Limits) -> str:
    observed = (result.result or {}).get("observed_value")
    if name == "genre_support":
        return (f"genre {meta['genre']!r}: {observed} movie(s), fewer than "
                f"min_genre_support={limits.min_genre_support}")
    missing = (result.result or {}).get("details", {}).get("mismatched", {}).get("missing")
    return f"missing column(s) {_quote_list(missing or [])}" if missing else str(observed)


def _outcomes(result: Any, severity: dict[str, str], limits: Limits) -> list[_Outcome]:
    by_rule: dict[str, _Outcome] = {}
    for item in result.results:
        meta = item.expectation_config.meta
        name = meta["rule"]
        outcome = by_rule.setdefault(name, _Outcome(
            name, meta["description"], severity[name], item.expectation_config.type))
        error = _exception_message(item)
        if error is not None:
            outcome.success, outcome.error = False, error
            continue
        if item.success:
            continue
        outcome.success = False
        if name in TABLE_RULES:
            outcome.problems = [*(outcome.problems or []),
                                _table_problem(name, item, meta, limits)]
        else:
            index = (item.result or {}).get("unexpected_index_list", [])
            outcome.offender_lines = sorted(int(entry[LINE_COLUMN]) for entry in index)
    order = list(DEFAULT_SEVERITY)
    return sorted(by_rule.values(), key=lambda o: order.index(o.name))


def _offender_entries(outcome: _Outcome, frame: pd.DataFrame, file_name: str) -> list[str]:
    """A sentence per offender; rows sharing a value are one sentence for grouped rules."""
    if outcome.name in TABLE_RULES:
        return [f"{file_name}: {problem}" for problem in outcome.problems or []]
    by_line = frame.set_index(LINE_COLUMN, drop=False)
    explain = EXPLAIN[outcome.name]
    if outcome.name in GROUPED:
        groups: dict[str, list[int]] = {}
        for line in outcome.lines:
            groups.setdefault(str(by_line.at[line, "imdb_id"]), []).append(line)
        return [f"{file_name} {'line' if len(g) == 1 else 'lines'} "
                f"{', '.join(map(str, g))}: {explain(by_line.loc[g[0]])}"
                for g in groups.values()]
    entries = []
    for line in outcome.lines:
        row = by_line.loc[line]
        who = f" ({row['imdb_id']})" if isinstance(row["imdb_id"], str) else ""
        entries.append(f"{file_name} line {line}{who}: {explain(row)}")
    return entries


def _describe(outcomes: Sequence[_Outcome], frame: pd.DataFrame, labels_path: Path,
              max_listed: int) -> list[str]:
    parts = []
    for outcome in outcomes:
        parts.append(f"- {outcome.name} ({outcome.description}), {outcome.flagged} flagged:")
        if outcome.error is not None:
            parts.append(f"    great-expectations raised an error: {outcome.error}")
            continue
        entries = _offender_entries(outcome, frame, labels_path.name)
        parts.extend(f"    {text}" for text in entries[:max_listed])
        if len(entries) > max_listed:
            parts.append(f"    ... and {len(entries) - max_listed} more")
    return parts


def _write_docs(result: Any, path: Path) -> None:
    """gx's own Data Docs rendering of the validation result, as one HTML page."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    html = DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(html)


def validate_dataset(  # noqa: C901 - one linear story: read, measure, judge, write
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    max_listed: int = 10,
    limits: Limits | None = None,
    soft_rules: Sequence[str] | None = None,
    warn_rules: Sequence[str] | None = None,
    hard_rules: Sequence[str] | None = None,
    max_reject_fraction: float = 0.05,
    metrics_path: str | os.PathLike[str] | None = None,
    docs_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Validate `data_dir/labels.csv` and its posters; write the results to `out_dir`.

    `soft_rules` / `warn_rules` / `hard_rules` override the default severity of the rules
    they name (see `DEFAULT_SEVERITY`). Writes `summary.json`, the metrics JSON (default `out_dir/
    metrics.json`) and the Data Docs HTML (default `out_dir/data_docs.html`) always, and
    `labels.csv` plus `rejects.csv` when no hard rule fails. Returns the summary.

    Raises:
        FileNotFoundError: `data_dir/labels.csv` does not exist.
        DataValidationError: the table cannot be read, lacks a required column, breaks a hard
            rule, or more than `max_reject_fraction` of its rows would be rejected; the
            message names the file and the first `max_listed` offenders of each rule.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    limits = limits or Limits()
    severity = resolve_severity(soft_rules, warn_rules, hard_rules)
    if not 0 <= max_reject_fraction <= 1:
        raise ValueError(f"max_reject_fraction must be in [0, 1], got {max_reject_fraction}")
    labels_path = data_dir / LABELS_FILE
    metrics_path = Path(metrics_path) if metrics_path else out_dir / METRICS_FILE
    docs_path = Path(docs_path) if docs_path else out_dir / DOCS_FILE
    if out_dir.resolve() == data_dir.resolve():
        # The outputs would overwrite the input table; the stage must never edit its input.
        raise ValueError(f"out_dir must differ from data_dir: {out_dir}")

    try:
        labels = read_labels(labels_path)
    except FileNotFoundError:
        raise
    except ValueError as exc:  # missing required column, or pandas could not parse the file
        message = str(exc)
        if str(labels_path) not in message:
            message = f"{labels_path}: cannot read labels table: {message}"
        raise DataValidationError(message) from exc

    lines = _record_lines(labels_path, len(labels))
    probes = _probe_all(labels, data_dir, limits)
    frame = _validation_frame(labels, probes, lines, limits)
    result, skipped = _run_suite(frame, limits)
    outcomes = _outcomes(result, severity, limits)

    # Soft-rule offenders move to rejects.csv; a row breaking several soft rules is rejected
    # once, for the first of them (rules run cheapest-check first, so that is the cause).
    reasons: dict[int, str] = {}
    for outcome in outcomes:
        if outcome.severity == "soft" and outcome.name not in TABLE_RULES:
            for line in outcome.lines:
                reasons.setdefault(line, outcome.name)
    failed_hard = [o for o in outcomes if not o.success and (
        o.severity == "hard" or o.error is not None)]
    too_many = len(labels) > 0 and len(reasons) > max_reject_fraction * len(labels)
    success = not failed_hard and not too_many

    rejected_mask = frame[LINE_COLUMN].isin(reasons).to_numpy()
    kept = labels[~rejected_mask].assign(
        **{PHASH_COLUMN: frame.loc[~rejected_mask, "phash"].to_numpy(),
           GROUP_COLUMN: frame.loc[~rejected_mask, GROUP_COLUMN].to_numpy()})
    rejects = labels[rejected_mask].assign(**{REASON_COLUMN: [
        reasons[line] for line in frame.loc[rejected_mask, LINE_COLUMN]]})
    reject_counts = {r: int(n) for r, n in rejects[REASON_COLUMN].value_counts().items()}

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
        "limits": vars(limits),
        "max_reject_fraction": max_reject_fraction,
        "near_duplicate_groups": int(
            (frame[GROUP_COLUMN].value_counts() > 1).sum()),
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
                "offending_imdb_ids": [by_line[n] if isinstance(by_line[n], str) else ""
                                       for n in o.lines[:max_listed]],
                **({"problems": o.problems[:max_listed]} if o.problems else {}),
                **({"error": o.error} if o.error is not None else {}),
            }
            for o in outcomes
        ],
        "skipped": [{"name": e["meta"]["rule"], "column": e["kwargs"]["column"],
                     "why": "column missing"} for e in skipped],
    }
    metrics = {
        "rows_in": summary["rows_in"],
        "rows_kept": summary["rows_kept"],
        "rows_rejected": summary["rows_rejected"],
        "rejects": reject_counts,
        "flagged": {o.name: o.flagged for o in outcomes},
        "near_duplicate_groups": summary["near_duplicate_groups"],
    }
    _write_docs(result, docs_path)
    write_json(metrics_path, metrics)
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
        rows = len({line for o in failed_hard for line in o.lines})
        noun = "rule" if len(failed_hard) == 1 else "rules"
        parts = [f"{labels_path}: {len(failed_hard)} validation {noun} failed, {rows} row(s) "
                 f"affected (details in {summary_path}):"] if failed_hard else [
                 f"{labels_path}: validation failed (details in {summary_path}):"]
        parts += _describe(failed_hard, frame, labels_path, max_listed)
        if too_many:
            soft = [o for o in outcomes if o.severity == "soft" and o.lines]
            parts.append(f"- {len(reasons)} of {len(labels)} rows would be rejected by soft "
                         f"rules, more than max_reject_fraction={max_reject_fraction}:")
            parts += ["  " + text for text in _describe(soft, frame, labels_path, max_listed)]
        raise DataValidationError("\n".join(parts))

    write_table(kept, out_dir / LABELS_FILE)
    write_table(rejects, out_dir / REJECTS_FILE)
    # Summary last: its presence means the stage finished.
    write_json(summary_path, summary)
    return summary
