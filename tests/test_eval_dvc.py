"""`dvc metrics diff` and `dvc plots show` after two runs with different params (real DVC)."""

import json

import pytest
import yaml

from tests.conftest import DEMO_MODELS
from tests.helpers import run_ok, tiny_project


def _commit(project, message):
    run_ok(["git", "add", "-A"], project)
    run_ok(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], project)


@pytest.mark.slow
def test_metrics_diff_and_plots_show_after_two_runs(tmp_path):
    project, params = tiny_project(tmp_path)
    _commit(project, "params")  # a real clone has commits (dvclive reads HEAD)
    run_ok(["dvc", "repro"], project)
    # evaluate's page, and the gate's: the same page opening with the decision.
    assert "Not judged yet" in (project / "reports" / "evaluation.html").read_text()
    report = (project / "reports" / "report.html").read_text()
    assert "Not judged yet" not in report and 'class="decision"' in report
    _commit(project, "first run")

    changed_model = DEMO_MODELS[0]
    params["models"][changed_model]["seed"] = 1
    params["models"][changed_model]["learning_rate"] = 0.05
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_ok(["dvc", "repro"], project)
    changed = json.loads(run_ok(["dvc", "metrics", "diff", "--json"], project))
    assert changed[f"reports/metrics/{changed_model}.json"]
    every = json.loads(run_ok(["dvc", "metrics", "diff", "--all", "--json"], project))
    for name in (changed_model, "null", "top3"):
        assert {"f1_micro", "map_macro", "top_class"} <= set(
            every[f"reports/metrics/{name}.json"])
    # A row per model, a column per metric: the table fits 120 columns.
    shown = run_ok(["dvc", "metrics", "show"], project)
    assert max(len(line) for line in shown.splitlines()) <= 120, shown
    # The second run compared its candidates with the first run's blessed model, if any.
    shown = run_ok(["dvc", "plots", "show", "--out", "plots-html"], project)
    page = (project / "plots-html" / "index.html").read_text()
    for title in ("ROC, micro-averaged", "Precision-recall, micro-averaged",
                  "Validation loss per epoch"):
        assert title in page, (title, shown)
    assert '"fpr"' in page and '"val_loss"' in page
    # Every model of params.yaml is drawn, though dvc.yaml names none of them.
    for name in params["models"]:
        assert f'"model": "{name}"' in page and f"roc_{name}.png" in page, name
    run_ok(["dvc", "plots", "diff", "HEAD", "--out", "plots-diff"], project)
    assert (project / "plots-diff" / "index.html").is_file()
