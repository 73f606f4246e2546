"""Both branches of the gate on really trained models (the demo settings of params.yaml).

The transfer model (the study's head on a frozen VGG16 base, offline weights: none) trained
on the demo posters must be blessed; the same model trained on the same posters with their
genre lists shuffled between movies has nothing to learn but the label frequencies, and
must be rejected. (The transfer model trains in seconds on cached features; the
from-scratch CNN is gated the same way in `make run`.)
"""

import json
from pathlib import Path

import pandas as pd
import pytest

from postergenre.configs import load_experiment
from postergenre.data.augment import augment_and_shard
from postergenre.data.split import split_dataset
from postergenre.evaluation.evaluate import evaluate_models
from postergenre.evaluation.gate import BLESSED, REJECTED, gate
from postergenre.serving.registry import register
from postergenre.sources.demo import generate_demo
from postergenre.training.train import train_model
from postergenre.validation.validate import validate_dataset
from tests.conftest import REPO_ROOT

# Every stage with params.yaml's settings, as `make run` runs them.
EXPERIMENT = load_experiment(str(REPO_ROOT / "params.yaml"))
(TRANSFER,) = [spec for spec in EXPERIMENT.models if spec.kind == "transfer"]


def _train_and_gate(data: Path, labels_csv: Path, work: Path) -> tuple[str, dict]:
    split_dataset(labels_csv, work / "split", EXPERIMENT.split)
    augment_and_shard(data, work / "split", work / "prepared", EXPERIMENT.augment)
    train_model(work / "prepared", work / "model", TRANSFER)
    evaluate_models(work / "prepared", {TRANSFER.name: work / "model"}, work / "evaluation",
                    EXPERIMENT.evaluate)
    decision = gate(work / "evaluation", work, EXPERIMENT.gate)
    return decision, json.loads((work / "blessing.json").read_text())


@pytest.mark.slow
def test_learnable_model_is_blessed_and_shuffled_labels_are_rejected(tmp_path):
    data = tmp_path / "data"
    generate_demo(data, EXPERIMENT.ingest.demo)
    validate_dataset(data, tmp_path / "validated", EXPERIMENT.validate)
    labels_csv = tmp_path / "validated" / "labels.csv"

    decision, blessing = _train_and_gate(data, labels_csv, tmp_path / "real")
    assert decision == BLESSED, blessing["failed_rules"]
    entry = register(tmp_path / "real" / "blessing.json",
                     {TRANSFER.name: tmp_path / "real" / "model"}, tmp_path / "registry")
    assert entry is not None and (entry / "model" / "model.keras").is_file()

    labels = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
    labels["genres"] = labels["genres"].sample(frac=1.0, random_state=1).to_numpy()
    shuffled_csv = tmp_path / "shuffled.csv"
    labels.to_csv(shuffled_csv, index=False)
    decision, blessing = _train_and_gate(data, shuffled_csv, tmp_path / "shuffled")
    assert decision == REJECTED
    failed = {r["rule"] for r in blessing["rules"] if not r["passed"]}
    assert "map_macro_over_null" in failed, blessing["rules"]
