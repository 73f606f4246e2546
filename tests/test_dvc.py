"""The DVC side, with the real DVC CLI on a copy of the project's pipeline files."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import DEMO_MODELS, REPO_ROOT
from tests.helpers import project_copy, run_ok, tiny_project

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_regenerated_demo_data_matches_data_dvc(tmp_path):
    """`make data` on a fresh clone records the very data version committed in data.dvc."""
    project = project_copy(tmp_path)
    # What `make data` runs: the demo settings come from params.yaml's ingest.demo.
    run_ok(["postergenre", "ingest", "--source", "demo", "--out", "data"], project)
    run_ok(["dvc", "add", "-q", "data"], project)
    assert (project / "data.dvc").read_bytes() == (REPO_ROOT / "data.dvc").read_bytes()
    status = run_ok(["dvc", "status", "data.dvc"], project)
    assert "up to date" in status, status


@pytest.mark.slow
def test_repro_runs_once_and_a_gate_param_reruns_only_the_gate(tmp_path):
    project, params = tiny_project(tmp_path)

    first = run_ok(["dvc", "repro"], project)
    for stage in ("validate", "split", "augment", *(f"train@{m}" for m in DEMO_MODELS),
                  "evaluate", "gate"):
        assert f"Running stage '{stage}'" in first
    metrics = run_ok(["dvc", "metrics", "show", "--json"], project)
    assert DEMO_MODELS[0] in metrics and "null" in metrics
    assert (project / "reports" / "blessing.json").is_file()
    # Each training's DVCLive folder (written epoch by epoch) is among DVC's plots.
    shown = subprocess.run([BIN / "dvc", "plots", "show", "--json"], cwd=project,
                           capture_output=True, text=True, check=True)
    plots = json.loads(shown.stdout)
    for model in DEMO_MODELS:
        live = f"reports/training/{model}/plots/metrics"
        assert f"{live}/eval/loss.tsv" in plots["data"], sorted(plots["data"])
        assert not [e for e in plots.get("errors", []) if e["name"].startswith(live)]

    assert "Data and pipelines are up to date" in run_ok(["dvc", "repro"], project)

    params["gate"]["min_map_margin"] = 0.2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = run_ok(["dvc", "repro"], project)
    assert [line for line in third.splitlines() if line.startswith("Running stage")] == [
        "Running stage 'gate':"]
    assert "up to date" in run_ok(["dvc", "status"], project)


def _rounded(metrics: dict) -> dict:
    return {model: {k: None if v is None else round(float(v), 6) for k, v in values.items()}
            for model, values in metrics.items()}


@pytest.mark.slow
def test_dvc_repro_and_kfp_local_run_one_experiment(tmp_path):
    """The same params.yaml under both orchestrators: the same data, the same models, the
    same metrics.json numbers (DVC calls the CLI, kfp.local the components). A model added
    to params.yaml, one entry and no other change, is trained by both."""
    added = "  added_cnn:\n    kind: scratch\n    seed: 7\n"
    project, _ = tiny_project(tmp_path, added)
    first = run_ok(["dvc", "repro"], project)
    assert "Running stage 'train@added_cnn'" in first
    by_dvc = json.loads((project / "reports" / "metrics.json").read_text())
    assert "added_cnn" in by_dvc

    run_ok(["postergenre", "pipeline", "run", "--local", "--params", "params.yaml",
          "--pipeline-root", "kfp-root", "-p", "registry=kfp-registry"], project)
    (by_kfp_path,) = (project / "kfp-root").glob("*/evaluate/evaluation/metrics.json")
    by_kfp = json.loads(by_kfp_path.read_text())
    assert set(by_dvc) == set(by_kfp) >= {*DEMO_MODELS, "added_cnn", "null", "top3"}
    assert _rounded(by_kfp) == _rounded(by_dvc)


def test_every_stage_depends_on_the_package_and_reads_only_its_params_section():
    """No changed module can be missed (the package as a whole is a dependency), and each
    stage's command passes paths only: its settings come from its params section."""
    graph = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    (variables,) = graph["vars"]
    assert variables["code"] == "src/postergenre"
    for name, stage in graph["stages"].items():
        stage = stage.get("do", stage)
        assert "${code}" in stage["deps"], name
        commands = stage["cmd"] if isinstance(stage["cmd"], list) else [stage["cmd"]]
        for command in commands:
            # ${...} only for the foreach item (model name and kind) and the paths of
            # `vars` (what `make real` points elsewhere), never a setting.
            assert set(re.findall(r"\$\{([^}]*)\}", command)) <= {
                "key", "item.kind", *variables}, name


def test_no_component_imports_the_cli():
    for path in (REPO_ROOT / "components").glob("*.py"):
        assert "postergenre.cli" not in path.read_text(), path.name
