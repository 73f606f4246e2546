"""`make exps`: DVC's experiments on one screen (120 columns), their choices and metrics.

`dvc exp show` gives every setting and every metric of every scorer a column of its own,
named by its file (`reports/metrics/scratch_cnn.json:map_macro`): even the few a person
compares do not fit a screen. This reads the same table (`dvc exp show --json`) and prints
one row per commit or experiment and model:

- `settings`: a commit's choices for each model (its `models` entry in params.yaml); an
  experiment's (and the workspace's) settings that differ from its commit's (a section's
  other than `models` on its first row, as `section.key=value`);
- each model's DVC metrics (reports/metrics/NAME.json), then the baselines' (`null`,
  `most_frequent`, `top3`) under each commit, and under an experiment only where they
  moved;
- a long settings cell wraps onto more lines: nothing is cut.

    make exps                      # the workspace, HEAD and HEAD's experiments
    python scripts/exps.py -A      # every commit's (any `dvc exp show` flag passes on)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

WIDTH = 120
BASELINES = ("null", "most_frequent", "top3")
NOT_SHOWN = ("last_blessed",)  # the registry's model re-scored: not a choice of the run
METRICS_PREFIX, METRICS_SUFFIX = "reports/metrics/", ".json"
SHORT = {"map_macro": "mAP", "f1_micro": "F1 micro", "f1_macro": "F1 macro",
         "top_class": "top class", "hamming_loss": "Hamming"}


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def _params(data: Mapping[str, Any] | None) -> dict[str, Any]:
    files = (data or {}).get("params") or {}
    return (files.get("params.yaml") or {}).get("data") or {}


def _metrics(data: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """{scorer: {metric: value}} from reports/metrics/NAME.json."""
    found = {}
    for path, content in ((data or {}).get("metrics") or {}).items():
        if path.startswith(METRICS_PREFIX) and path.endswith(METRICS_SUFFIX):
            name = path[len(METRICS_PREFIX):-len(METRICS_SUFFIX)]
            if "/" not in name and name not in NOT_SHOWN:
                found[name] = (content or {}).get("data") or {}
    return found


def _value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _settings(params: Mapping[str, Any], base: Mapping[str, Any] | None) -> dict[str, str]:
    """{model or "": "key=value ..."}: every choice (no `base`), or what differs from it."""
    now, then = _flat(params), _flat(base) if base is not None else None
    cells: dict[str, list[str]] = {}
    for key, value in now.items():
        if then is not None and key in then and then[key] == value:
            continue
        parts = key.split(".")
        if parts[0] == "models" and len(parts) > 2:
            cells.setdefault(parts[1], []).append(f"{'.'.join(parts[2:])}={_value(value)}")
        elif then is not None:
            cells.setdefault("", []).append(f"{key}={_value(value)}")
    for key in sorted(set(then or ()) - set(now)):  # a setting the experiment dropped
        cells.setdefault("", []).append(f"{key} unset")
    return {name: " ".join(parts) for name, parts in cells.items()}


def rows_of(table: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(metric names, rows of cells: label, model, metrics..., settings)."""
    metric_names: list[str] = []
    for commit in table:
        for values in _metrics(commit.get("data")).values():
            metric_names += [m for m in values if m not in metric_names]
    rows: list[list[str]] = []

    def add(label: str, data: Mapping[str, Any] | None, base: Mapping[str, Any] | None,
            base_metrics: Mapping[str, Any] | None) -> None:
        metrics = _metrics(data)
        settings = _settings(_params(data), _params(base) if base is not None else None)
        models = [m for m in metrics if m not in BASELINES]
        models += [m for m in _params(data).get("models") or {} if m not in metrics]
        models += [m for m in BASELINES if m in metrics and (
            base_metrics is None or metrics[m] != base_metrics.get(m))]
        first = len(rows)
        for model in models or [""]:
            values = metrics.get(model, {})
            rows.append(["", model, *(_value(values.get(m)) for m in metric_names),
                         settings.get(model, "")])
        rows[first][0] = label
        if settings.get(""):
            rows[first][-1] = " ".join(filter(None, (settings[""], rows[first][-1])))

    for number, commit in enumerate(table):
        data = commit.get("data")
        rev = str(commit.get("rev"))
        label = str(commit.get("name") or (rev if rev == "workspace" else rev[:7]))
        if commit.get("error"):
            label += " (failed)"
        if rev == "workspace" and number + 1 < len(table):  # uncommitted: against HEAD
            head = table[number + 1].get("data")
            add(label, data, head, _metrics(head))
            continue
        add(label, data, None, None)
        for experiment in commit.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                failed = " (failed)" if rev.get("error") else ""
                add(f"  {str(rev.get('rev'))[:7]} {rev.get('name') or ''}{failed}",
                    rev.get("data"), data, _metrics(data))
    return metric_names, rows


def render(metric_names: list[str], rows: list[list[str]], width: int = WIDTH) -> str:
    """The table in `width` columns: the settings column takes what is left, wrapped."""
    head = ["experiment", "model", *(SHORT.get(m, m) for m in metric_names), "settings"]
    fixed = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    room = max(20, width - sum(fixed) - 2 * (len(fixed)))
    lines = []
    for row in [head, *rows]:
        wrapped = textwrap.wrap(row[-1], room, break_on_hyphens=False) or [""]
        for n, text in enumerate(wrapped):
            cells = row[:-1] if n == 0 else [""] * len(fixed)
            line = "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, fixed, strict=True)))
            lines.append(f"{line}  {text}".rstrip())
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    done = subprocess.run(["dvc", "exp", "show", "--json", *argv], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        return done.returncode
    print(render(*rows_of(json.loads(done.stdout))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
