"""`make real`: the whole pipeline on a poster folder of one's own, into its own folder."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import DEMO_MODELS, REPO_ROOT

BIN = Path(sys.executable).parent


def _make_real(tmp_path, data: Path, overlays: list[Path], split: Path | None = None):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    args = ["make", "-s", "--no-print-directory", "-C", str(REPO_ROOT), "real",
            f"DATA={data}", f"OUT={tmp_path / 'out'}",
            f"REAL_PARAMS={' '.join(map(str, overlays))}"]
    if split:
        args.append(f"SPLIT={split}")
    return subprocess.run(args, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_make_real_runs_every_stage_into_its_own_folder(tmp_path, tiny_data):
    """dvc.yaml's stage graph, run by DVC in a project of its own in OUT; a rerun finds
    everything up to date."""
    labels = pd.read_csv(tiny_data / "labels.csv", dtype=str)
    cycle = ["train"] * 3 + ["validation", "test"]
    split = labels[["imdb_id"]].assign(
        split=(cycle * (len(labels) // len(cycle) + 1))[:len(labels)])
    split.to_csv(tmp_path / "split.csv", index=False)

    tiny = [REPO_ROOT / "params-tiny.yaml"]
    done = _make_real(tmp_path, tiny_data, tiny, tmp_path / "split.csv")
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "out"
    # It ends with the summary: the metrics table and the gate's decision.
    assert "Gate: " in done.stdout and "Test-split metrics" in done.stdout
    models = yaml.safe_load((out / "params.yaml").read_text())["models"]
    assert list(models) == DEMO_MODELS
    metrics = json.loads((out / "reports" / "metrics.json").read_text())
    assert set(models) | {"null", "top3"} <= set(metrics)
    for name in models:
        assert (out / "outputs" / "models" / name / "model.keras").is_file()
        assert (out / "reports" / "scores" / "test" / f"{name}.csv").is_file()
    # The given split was used as given.
    test_ids = set(pd.read_csv(out / "outputs" / "split" / "test.csv", dtype=str)["imdb_id"])
    assert test_ids == set(split[split["split"] == "test"]["imdb_id"])
    # The registered model records the poster folder's content hash as its data version,
    # and the commit of the checkout whose code ran.
    latest = json.loads((out / "registry" / "latest.json").read_text())
    assert latest["data_version"].startswith("sha256:") and latest["data_source"] == "demo"
    assert len(latest["lineage"]["git_commit"]) >= 40
    # Nothing of the demo run was touched; a rerun has nothing to do.
    assert not (out.parent / "data").exists()
    again = _make_real(tmp_path, tiny_data, tiny, tmp_path / "split.csv")
    assert again.returncode == 0, again.stdout + again.stderr
    status = subprocess.run([str(BIN / "dvc"), "status"], cwd=out, capture_output=True,
                            text=True)
    assert "up to date" in status.stdout, status.stdout + status.stderr


def test_make_real_without_data_says_what_to_give(tmp_path):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["make", "-s", "-C", str(REPO_ROOT), "real"], env=env,
                          capture_output=True, text=True)
    assert done.returncode != 0 and "set DATA=DIR" in done.stderr


POSTERS_MOVIELENS = REPO_ROOT.parent / "shared" / "data" / "posters-movielens"


@pytest.mark.slow
@pytest.mark.skipif(not (POSTERS_MOVIELENS / "labels.csv").is_file(),
                    reason="../shared/data/posters-movielens is not on this machine")
def test_real_posters_bless_a_model_and_reject_it_trained_on_shuffled_labels(tmp_path):
    """params-real.yaml's gate on 4,000 real posters: the linear probe (the cheapest model
    of the real settings: about 4 minutes of features on 2 cores; bench/quality.py runs
    them all) is blessed; the same model trained on the same posters with each movie's
    genres taken from another movie learns only the genre priors and is rejected."""
    (tmp_path / "probe.yaml").write_text(
        "models: {scratch_cnn: null, lite0_transfer: null, lite_probe: null}\n"
        "evaluate: {reference_model: ''}\n")
    probe = [REPO_ROOT / "params-real.yaml", tmp_path / "probe.yaml"]

    done = _make_real(tmp_path / "real", POSTERS_MOVIELENS, probe)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    blessing = json.loads((tmp_path / "real/out/reports/blessing.json").read_text())
    assert blessing["decision"] == "blessed", blessing["failed_rules"]
    assert blessing["model"] == "lite0_probe"

    # The same posters and the same split; the genre columns permuted across movies.
    shuffled = tmp_path / "shuffled"
    shutil.copytree(POSTERS_MOVIELENS / "posters", shuffled / "posters")
    labels = pd.read_csv(POSTERS_MOVIELENS / "labels.csv", dtype=str, keep_default_na=False)
    order = np.random.default_rng(0).permutation(len(labels))
    for column in ("genres", "source_genres"):
        labels[column] = labels[column].to_numpy()[order]
    labels.to_csv(shuffled / "labels.csv", index=False)
    split = pd.concat([pd.read_csv(tmp_path / f"real/out/outputs/split/{part}.csv", dtype=str)
                       [["imdb_id"]].assign(split=part)
                       for part in ("train", "validation", "test")])
    split.to_csv(tmp_path / "split.csv", index=False)

    done = _make_real(tmp_path / "noise", shuffled, probe, tmp_path / "split.csv")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    blessing = json.loads((tmp_path / "noise/out/reports/blessing.json").read_text())
    assert blessing["decision"] == "rejected"
    failed = {r["rule"] for r in blessing["rules"] if not r["passed"]}
    assert any(rule.startswith("map") for rule in failed), failed
