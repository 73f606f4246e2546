"""`make real`: the whole pipeline on a poster folder of one's own, into its own folder."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from postergenre.configs import MODEL_KINDS
from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent
TINY = {
    "validate": {"min_genre_support": 0},
    "augment": {"image_size": 32},
    "evaluate": {"bootstrap_resamples": 10, "report_posters": 2},
}


def _make_real(tmp_path, data: Path, params: Path, split: Path | None = None):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    args = ["make", "-s", "--no-print-directory", "-C", str(REPO_ROOT), "real",
            f"DATA={data}", f"OUT={tmp_path / 'out'}", f"REAL_PARAMS={params}"]
    if split:
        args.append(f"SPLIT={split}")
    return subprocess.run(args, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_make_real_runs_every_stage_into_its_own_folder(tmp_path, tiny_data):
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    for entry in params["models"].values():
        # A linear probe has no epochs: only the settings its kind has are shortened.
        kind_settings = {f.name for f in fields(MODEL_KINDS[entry["kind"]])}
        entry.update({k: v for k, v in {"epochs": 1, "fine_tune_epochs": 0,
                                        "batch_size": 16}.items() if k in kind_settings})
        if entry["kind"] == "scratch":
            entry.update({"conv1_filters": 4, "conv2_filters": 4, "dense_units": 8})
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(params))
    labels = pd.read_csv(tiny_data / "labels.csv", dtype=str)
    cycle = ["train"] * 3 + ["validation", "test"]
    split = labels[["imdb_id"]].assign(
        split=(cycle * (len(labels) // len(cycle) + 1))[:len(labels)])
    split.to_csv(tmp_path / "split.csv", index=False)

    done = _make_real(tmp_path, tiny_data, tmp_path / "tiny.yaml", tmp_path / "split.csv")
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "out"
    # It ends with the summary: the metrics table and the gate's decision.
    assert "Gate: " in done.stdout and "Test-split metrics" in done.stdout
    metrics = json.loads((out / "reports" / "metrics.json").read_text())
    assert set(params["models"]) | {"null", "top3"} <= set(metrics)
    for name in params["models"]:
        assert (out / "models" / name / "model.keras").is_file()
        assert (out / "reports" / "scores" / "test" / f"{name}.csv").is_file()
    # The given split was used as given.
    test_ids = set(pd.read_csv(out / "split" / "test.csv", dtype=str)["imdb_id"])
    assert test_ids == set(split[split["split"] == "test"]["imdb_id"])
    # Nothing of the demo run was touched.
    assert not (out.parent / "data").exists()


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
    params = yaml.safe_load((REPO_ROOT / "params-real.yaml").read_text())
    params["models"] = {"lite0_probe": params["models"]["lite0_probe"]}
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump(params))

    done = _make_real(tmp_path / "real", POSTERS_MOVIELENS, tmp_path / "probe.yaml")
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
    split = pd.concat([pd.read_csv(tmp_path / f"real/out/split/{part}.csv", dtype=str)
                       [["imdb_id"]].assign(split=part)
                       for part in ("train", "validation", "test")])
    split.to_csv(tmp_path / "split.csv", index=False)

    done = _make_real(tmp_path / "noise", shuffled, tmp_path / "probe.yaml",
                      tmp_path / "split.csv")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    blessing = json.loads((tmp_path / "noise/out/reports/blessing.json").read_text())
    assert blessing["decision"] == "rejected"
    failed = {r["rule"] for r in blessing["rules"] if not r["passed"]}
    assert any(rule.startswith("map") for rule in failed), failed
