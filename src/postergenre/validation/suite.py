"""Run the repo's great-expectations suite on a validation frame and read its verdicts.

The suite is a real gx 1.x `ExpectationSuite` kept as JSON (`resources/postergenre_suite.json`);
its bounds are suite parameters (`{"$PARAMETER": name}`) filled from the ValidateConfig
field of the same name. gx's per-expectation results are gathered into one `RuleOutcome`
per rule (`meta.rule`), in the order of `validation_rules.RULES`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pandas as pd

from postergenre.configs import ValidateConfig
from postergenre.validation.frame import LINE_COLUMN
from postergenre.validation.rules import RULES, RULES_BY_NAME, Severity

# gx phones home on import and on context creation unless told not to; the cluster and CI
# have no internet, so a missing setting would mean timeouts and log noise, not data.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

SUITE_FILE = "postergenre_suite.json"
SUITE_NAME = "postergenre_labels"


def load_suite_config() -> dict[str, Any]:
    """The suite as kept in the repo (JSON: name, expectations with `$PARAMETER` bounds)."""
    text = resources.files("postergenre").joinpath("resources", SUITE_FILE).read_text("utf-8")
    return json.loads(text)


def _parameter_names(node: Any) -> set[str]:
    """Every `{"$PARAMETER": name}` under `node`."""
    if isinstance(node, dict):
        if set(node) == {"$PARAMETER"}:
            return {node["$PARAMETER"]}
        return set().union(*(_parameter_names(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_parameter_names(value) for value in node))
    return set()


def suite_parameters(config: ValidateConfig, suite: dict[str, Any]) -> dict[str, Any]:
    """The values of the suite's parameters, read from the config's fields of those names."""
    names = _parameter_names(suite["expectations"])
    unknown = sorted(name for name in names if not hasattr(config, name))
    if unknown:
        # A renamed config field must not leave the suite comparing against nothing.
        raise ValueError(f"{SUITE_FILE}: suite parameter {unknown[0]!r} is not a "
                         "ValidateConfig setting")
    return {name: getattr(config, name) for name in sorted(names)}


@dataclass
class RuleOutcome:
    """One rule's verdict, gathered from its expectation(s)."""

    name: str
    description: str
    severity: Severity
    expectation: str
    success: bool = True
    lines: list[int] = field(default_factory=list)  # row rules: offending lines, file order
    problems: list[str] = field(default_factory=list)  # table rules: one sentence each
    error: str | None = None  # gx's message when the expectation itself crashed

    @property
    def table(self) -> bool:
        return RULES_BY_NAME[self.name].table

    @property
    def flagged(self) -> int:
        return len(self.problems) if self.table else len(self.lines)


def run_suite(
    frame: pd.DataFrame, parameters: dict[str, Any], suite_config: dict[str, Any]
) -> tuple[Any, list[dict[str, Any]]]:
    """Run the suite on `frame`; return gx's result and the expectations skipped.

    Expectations on a column the table lacks (an optional id column) are skipped: the
    `columns_expected` rule reports the missing column once, instead of one crash per rule.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # gx logs its own set-up at INFO on import; the stage reports what matters itself.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    run: list[Any] = []
    skipped: list[Any] = []
    for expectation in suite_config["expectations"]:
        column = expectation["kwargs"].get("column")
        (skipped if column is not None and column not in frame.columns else run).append(
            expectation)
    # One in-memory context per call: creating it is cheap (ms); importing gx is the slow part.
    context = gx.get_context(mode="ephemeral")
    # gx 1.x draws a tqdm "Calculating Metrics" bar on stderr for every run unless disabled.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = (context.data_sources.add_pandas("labels").add_dataframe_asset("labels")
             .add_batch_definition_whole_dataframe("whole_table"))
    suite = context.suites.add(gx.ExpectationSuite(
        name=suite_config["name"], expectations=run, meta=suite_config.get("meta")))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite_config["name"], data=batch, suite=suite))
    result = definition.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=parameters,
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


def _finding(result: Any, meta: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """What a failed table expectation found, for its rule's `explain`."""
    details = (result.result or {}).get("details", {})
    return {**parameters, **meta, "observed": (result.result or {}).get("observed_value"),
            "missing": details.get("mismatched", {}).get("missing") or []}


def rule_outcomes(
    result: Any, severity: dict[str, Severity], parameters: dict[str, Any]
) -> list[RuleOutcome]:
    """One outcome per rule that ran, in the order of RULES."""
    by_rule: dict[str, RuleOutcome] = {}
    for item in result.results:
        meta = item.expectation_config.meta
        name = meta["rule"]
        outcome = by_rule.setdefault(name, RuleOutcome(
            name, meta["description"], severity[name], item.expectation_config.type))
        error = _exception_message(item)
        if error is not None:
            outcome.success, outcome.error = False, error
            continue
        if item.success:
            continue
        outcome.success = False
        if outcome.table:
            explain = RULES_BY_NAME[name].explain
            outcome.problems.append(explain(_finding(item, meta, parameters)))
        else:
            index = (item.result or {}).get("unexpected_index_list", [])
            outcome.lines = sorted(int(entry[LINE_COLUMN]) for entry in index)
    order = [rule.name for rule in RULES]
    return sorted(by_rule.values(), key=lambda o: order.index(o.name))
