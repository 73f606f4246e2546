"""`dvc metrics diff`, `dvc plots show`, `make exps` and `dvc artifacts get` after a run
and an experiment with different params (real DVC and GTO)."""

import json
import re

import pytest
import yaml

from tests.conftest import DEMO_MODELS, REPO_ROOT
from tests.helpers import BIN, run_ok, tiny_project


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
    # What the data was and its version (data.dvc's md5), and honest filter labels.
    provenance = report[report.index('id="provenance"'):report.index('id="decision"')]
    md5 = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]
    assert "synthetic demo posters" in provenance and md5 in provenance, provenance
    for name, spec in params["models"].items():
        origin = ("learned: trained from scratch" if spec["kind"] == "scratch" else
                  "random: a randomly initialised, frozen layer")
        assert f"{name}, first conv layer: {origin}" in report, name
    _commit(project, "first run")

    # dvc.yaml's `artifacts:` names the blessed model: a GTO version of it, then DVC
    # fetches it by name (from this commit's cache) as the registry's latest entry.
    run_ok(["gto", "register", "postergenre"], project)
    run_ok(["dvc", "artifacts", "get", str(project), "postergenre", "-o",
            str(tmp_path / "got")], tmp_path)
    record = json.loads((tmp_path / "got" / "blessed.json").read_text())
    latest = json.loads((project / "registry" / "latest.json").read_text())
    assert record["entry"] == latest["entry"]
    assert (tmp_path / "got" / "model" / "model.keras").read_bytes() == (
        project / "registry" / latest["entry"] / "model" / "model.keras").read_bytes()
    assert (tmp_path / "got" / "thresholds.json").is_file()

    changed_model = DEMO_MODELS[0]
    params["models"][changed_model]["seed"] = 1
    params["models"][changed_model]["learning_rate"] = 0.05
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_ok(["dvc", "exp", "run"], project)  # an experiment; its results in the workspace
    # `make exps`: HEAD's choices and the experiment's change with each model's metrics,
    # in 120 columns (the make target itself, pointed at this project).
    shown = run_ok(["make", "-s", "-C", str(REPO_ROOT), "-o", ".venv/.installed", "exps",
                    f"EXPS_DIR={project}", f"BIN={BIN}"], project)
    lines = shown.splitlines()
    assert max(len(line) for line in lines) <= 120, shown
    assert lines[0].split()[:3] == ["experiment", "model", "mAP"]
    # The experiment's rows: `  <rev> <name>  MODEL ...`, then `MODEL ...` for the others.
    start = next(i for i, line in enumerate(lines) if re.match(r"  [0-9a-f]{7} ", line))
    rows = {line.split()[2 if i == start else 0]: line
            for i, line in enumerate(lines[start:start + len(DEMO_MODELS)], start)}
    assert "learning_rate=0.05" in rows[changed_model] and "seed=1" in rows[changed_model]
    exp_metrics = json.loads((project / "reports" / "metrics" / f"{changed_model}.json")
                             .read_text())
    assert f"{exp_metrics['map_macro']:.3f}" in rows[changed_model]
    for name in params["models"]:
        assert name in shown and f"kind={params['models'][name]['kind']}" in shown
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
