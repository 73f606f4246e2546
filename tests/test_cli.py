"""The CLI dvc.yaml calls: help that explains, and one clear line for bad input."""

import subprocess
import sys

import pandas as pd
import pytest

from postergenre.cli import main

STAGES = ("ingest", "validate", "split", "augment", "train-scratch", "train-vgg16",
          "evaluate", "gate", "register", "summary", "pipeline")


def test_help_lists_every_stage():
    done = subprocess.run([sys.executable, "-m", "postergenre.cli", "--help"],
                          capture_output=True, text=True)
    assert done.returncode == 0
    for stage in STAGES:
        assert stage in done.stdout


def test_bad_labels_table_fails_with_the_row_named(tiny_data, tmp_path, capsys):
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "posters").symlink_to(tiny_data / "posters")
    labels = pd.read_csv(tiny_data / "labels.csv", dtype=str, keep_default_na=False)
    labels.loc[4, "genres"] = "Drama|Space Opera"
    labels.to_csv(bad / "labels.csv", index=False)
    assert main(["validate", "--data", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "line 6" in err and labels.loc[4, "imdb_id"] in err and "Space Opera" in err
    assert "Traceback" not in err


def test_missing_input_is_named(tmp_path, capsys):
    assert main(["gate", "--metrics", str(tmp_path / "nope.json"),
                 "--blessing", str(tmp_path / "b.json")]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_malformed_model_flag_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["register", "--blessing", "b.json", "--model", "scratch", "--registry", "r"])
    assert exit_info.value.code == 2


def test_unknown_pipeline_parameter_is_named(capsys):
    assert main(["pipeline", "run", "--local", "-p", "epochs=3"]) == 2
    assert "unknown pipeline parameter 'epochs'" in capsys.readouterr().err
