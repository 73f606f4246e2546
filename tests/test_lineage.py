"""Lineage (postergenre.lineage): the four fields every output artifact and registry entry
carry, computed the same way by the Kubeflow components and by the CLI under DVC."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from kfp import dsl

from postergenre.cli import main
from postergenre.configs import GateConfig, SplitConfig, model_spec
from postergenre.lineage import (
    GIT_COMMIT_ENV,
    IMAGE_ENV,
    LINEAGE_KEYS,
    LOCAL_IMAGE,
    git_commit,
    local_lineage,
    local_model_lineages,
    params_hash,
    task_lineage,
)
from postergenre.serving.registry import ENTRY_FILE, LATEST_FILE
from tests.conftest import REPO_ROOT

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
MD5 = "0123456789abcdef0123456789abcdef.dir"
# What the pipeline's compile hands every task (pod annotations -> Downward API).
CLUSTER_ENV = {IMAGE_ENV: "registry.example/postergenre@sha256:" + "c" * 64,
               GIT_COMMIT_ENV: "f" * 40}


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git checkout holding params.yaml and a data.dvc, committed."""
    work = tmp_path / "repo"
    work.mkdir()
    _git(work, "init", "-q")
    (work / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    (work / "data.dvc").write_text(yaml.safe_dump({"outs": [
        {"md5": MD5, "nfiles": 3, "hash": "md5", "path": "data"}]}))
    _git(work, "add", ".")
    _git(work, "commit", "-qm", "data version")
    return work


def test_params_hash_is_stable_and_follows_every_value():
    gate = {"epsilon": 0.02, "min_f1_micro_margin": 0.01}
    reordered = dict(reversed(list(gate.items())))
    assert params_hash({"gate": gate}) == params_hash({"gate": reordered})
    # The same bytes in every process and release: canonical JSON, sha256, 16 hex digits.
    # (the sha256 of '{"gate":{"epsilon":0.02}}', cut to 16 digits)
    assert params_hash({"gate": {"epsilon": 0.02}}) == "50c108296d38ab70"
    assert params_hash({"gate": {**gate, "epsilon": 0.03}}) != params_hash({"gate": gate})
    assert params_hash({"split": {"seed": 1}}) != params_hash({"gate": {"seed": 1}})
    # A typed config is hashed with every default filled in: implicit == explicit.
    explicit = {name: getattr(GateConfig(), name) for name in GateConfig.__dataclass_fields__}
    assert params_hash({"gate": GateConfig()}) == params_hash({"gate": explicit})
    assert params_hash({"split": SplitConfig(seed=7)}) != params_hash({"split": SplitConfig()})
    # Tuples and lists are the same JSON.
    assert params_hash({"x": (1, 2)}) == params_hash({"x": [1, 2]})


def test_git_commit_marks_uncommitted_edits_and_is_empty_without_a_checkout(repo, tmp_path):
    head = _git(repo, "rev-parse", "HEAD")
    assert git_commit(repo) == head and len(head) == 40
    (repo / "params.yaml").write_text("edited: true\n")
    assert git_commit(repo) == f"{head}-dirty"
    (repo / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    (repo / "untracked.txt").write_text("not part of any commit")
    assert git_commit(repo) == head  # untracked files change nothing the commit names
    outside = tmp_path / "no-checkout"
    outside.mkdir()
    assert git_commit(outside) == ""
    assert git_commit(tmp_path / "missing") == ""


def test_task_lineage_reads_what_the_compile_handed_the_pod():
    lineage = task_lineage(MD5, {"gate": GateConfig()}, environ=CLUSTER_ENV)
    assert lineage.as_metadata() == {
        "data_version": MD5, "git_commit": "f" * 40,
        "params_hash": params_hash({"gate": GateConfig()}),
        "image": CLUSTER_ENV[IMAGE_ENV]}
    assert list(lineage.as_metadata()) == list(LINEAGE_KEYS)
    # kfp.local (no pod, no annotations): this checkout's commit, image `local`.
    local = task_lineage("", {}, environ={})
    assert local.image == LOCAL_IMAGE and local.git_commit == git_commit()


def test_local_lineage_reads_data_dvc_and_git(repo):
    lineage = local_lineage({"gate": GateConfig()}, dvc_file=repo / "data.dvc", repo=repo)
    assert lineage.data_version == MD5
    assert lineage.git_commit == _git(repo, "rev-parse", "HEAD")
    assert lineage.image == LOCAL_IMAGE
    assert local_lineage({}, data_version="given", dvc_file=repo / "data.dvc",
                         repo=repo).data_version == "given"
    assert local_lineage({}, dvc_file=repo / "absent.dvc", repo=repo).data_version == ""


def test_a_models_params_hash_is_the_same_under_dvc_and_kfp_local(repo, monkeypatch):
    """The CLI's registry lineage and the training task's hash the same `models` entry
    the same way: params.yaml's entry (DVC) and the compiled default kfp.local runs."""
    from postergenre.configs import load_run_params
    from postergenre.pipelines.runner import pipeline_parameters

    monkeypatch.chdir(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    names = list(params["models"])
    lineages = local_model_lineages(names, load_run_params(["params.yaml"]))
    compiled = pipeline_parameters()["models"].default
    for name in names:
        trained = task_lineage(MD5, {"models": {name: model_spec(name, compiled[name])}},
                               environ={})
        assert lineages[name]["params_hash"] == trained.params_hash, name
        assert lineages[name]["data_version"] == MD5
        assert lineages[name]["image"] == LOCAL_IMAGE
    assert local_model_lineages(["not_in_params"], params)["not_in_params"][
        "params_hash"] == ""


# ---- the components, run as functions on kfp.dsl artifacts ------------------------------


def _artifact(kind, path: Path, metadata=None):
    return kind(uri=str(path), metadata=dict(metadata or {}))


def test_data_components_stamp_every_output(tmp_path, monkeypatch):
    from postergenre.components import ingest as ingest_component
    from postergenre.components import split as split_component
    from postergenre.components import validate as validate_component

    for key, value in CLUSTER_ENV.items():
        monkeypatch.setenv(key, value)
    config = {"demo": {"n_posters": 24, "width": 48, "height": 72}}
    dataset = _artifact(dsl.Dataset, tmp_path / "dataset")
    report = _artifact(dsl.Artifact, tmp_path / "report.json")
    ingest_component.ingest(dataset, report, config=config, source="demo", data_version=MD5)
    from postergenre.configs import IngestConfig
    from postergenre.typed_config import from_mapping

    expected = {"data_version": MD5, "git_commit": CLUSTER_ENV[GIT_COMMIT_ENV],
                "image": CLUSTER_ENV[IMAGE_ENV], "params_hash": params_hash(
                    {"ingest": from_mapping(IngestConfig, config, "ingest"),
                     "source": "demo"})}
    for artifact in (dataset, report):
        assert {k: artifact.metadata[k] for k in LINEAGE_KEYS} == expected
    assert dataset.metadata["posters"] == 24
    validated = _artifact(dsl.Dataset, tmp_path / "validated")
    docs = _artifact(dsl.HTML, tmp_path / "docs.html")
    metrics = _artifact(dsl.Metrics, tmp_path / "metrics")
    validate_component.validate(dataset, validated, docs, metrics,
                                config={"min_genre_support": 0}, data_version=MD5)
    for artifact in (validated, docs, metrics):
        assert artifact.metadata["data_version"] == MD5
        assert artifact.metadata["git_commit"] == CLUSTER_ENV[GIT_COMMIT_ENV]
    assert metrics.metadata["rows_in"] == 24  # the scalars stay beside the lineage
    splits = _artifact(dsl.Dataset, tmp_path / "splits")
    split_component.split(validated, splits, config={"seed": 3}, data_version=MD5)
    assert splits.metadata["params_hash"] == params_hash({"split": SplitConfig(seed=3)})
    assert splits.metadata["data_version"] == MD5
    assert splits.metadata["image"] == CLUSTER_ENV[IMAGE_ENV]
    assert splits.metadata["counts"]  # its own metadata is still there


def _blessing(tmp_path: Path, model: str = "scratch_cnn") -> Path:
    """A real gate decision blessing `model` on crafted metrics, with thresholds."""
    from postergenre.evaluation.gate import gate

    good = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.1, "genres_per_movie": 2.0,
            "true_genres_per_movie": 2.0}
    null = {"f1_micro": 0.0, "map_macro": 0.12, "hamming_loss": 0.12,
            "genres_per_movie": 0.0, "true_genres_per_movie": 2.0}
    top1 = {**null, "f1_micro": 0.3, "hamming_loss": 0.13, "genres_per_movie": 1.0}
    top3 = {**null, "f1_micro": 0.35, "hamming_loss": 0.2, "genres_per_movie": 3.0}
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    (evaluation / "metrics.json").write_text(json.dumps(
        {model: good, "null": null, "most_frequent": top1, "top3": top3}))
    (evaluation / "thresholds.json").write_text(json.dumps(
        {model: {"global": 0.4, "per_genre": {"Drama": 0.3}}}))
    assert gate(evaluation, tmp_path, GateConfig()) == "blessed"
    return tmp_path / "blessing.json"


def _trained(tmp_path: Path, name: str = "scratch_cnn") -> Path:
    folder = tmp_path / "trained" / name
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"weights of " + name.encode())
    return folder


def test_register_component_records_the_training_lineage(tmp_path, monkeypatch):
    """The register task writes the model's lineage (the training task's, which the model
    artifact carries) into entry.json and latest.json, and onto its Model artifact."""
    from postergenre.components import register as register_component

    for key, value in CLUSTER_ENV.items():
        monkeypatch.setenv(key, value)
    trained_with = {"data_version": MD5, "git_commit": "a" * 40, "params_hash": "1" * 16,
                    "image": "registry.example/postergenre-gpu@sha256:" + "d" * 64}
    model = _artifact(dsl.Model, _trained(tmp_path), {"name": "scratch_cnn", **trained_with})
    blessing = _artifact(dsl.Artifact, _blessing(tmp_path))
    registered = _artifact(dsl.Model, tmp_path / "registered")
    registry = tmp_path / "registry"
    register_component.register(blessing, model, str(registry), registered, data_version=MD5)
    latest = json.loads((registry / LATEST_FILE).read_text())
    entry = json.loads((registry / latest["entry"] / ENTRY_FILE).read_text())
    assert entry["lineage"] == trained_with == latest["lineage"]
    assert {k: registered.metadata[k] for k in LINEAGE_KEYS} == trained_with
    assert registered.metadata["entry"] == latest["entry"]


def test_register_component_without_a_training_lineage_says_so(tmp_path, monkeypatch):
    from postergenre.components import register as register_component

    monkeypatch.setenv(IMAGE_ENV, CLUSTER_ENV[IMAGE_ENV])
    monkeypatch.setenv(GIT_COMMIT_ENV, CLUSTER_ENV[GIT_COMMIT_ENV])
    model = _artifact(dsl.Model, _trained(tmp_path), {"name": "scratch_cnn"})
    registered = _artifact(dsl.Model, tmp_path / "registered")
    register_component.register(_artifact(dsl.Artifact, _blessing(tmp_path)), model,
                                str(tmp_path / "registry"), registered, data_version=MD5)
    entry = json.loads(next((tmp_path / "registry").glob(f"*/{ENTRY_FILE}")).read_text())
    assert entry["lineage"] == {"data_version": MD5, "params_hash": "",
                                "git_commit": CLUSTER_ENV[GIT_COMMIT_ENV],
                                "image": CLUSTER_ENV[IMAGE_ENV]}


def test_cli_register_under_dvc_records_a_local_lineage(repo, tmp_path, monkeypatch, capsys):
    """`postergenre register` (dvc.yaml's register stage): the data version from
    data.dvc, the checkout's commit, the model's params hash, image `local`."""
    monkeypatch.chdir(repo)
    blessing = _blessing(tmp_path)
    models_root = tmp_path / "trained"
    _trained(tmp_path, "scratch_cnn")
    assert main(["register", "--blessing", str(blessing), "--registry", "registry",
                 "--models-root", str(models_root), "--data-dvc", "data.dvc"]) == 0
    assert "registered" in capsys.readouterr().out
    latest = json.loads((repo / "registry" / LATEST_FILE).read_text())
    entry = json.loads((repo / "registry" / latest["entry"] / ENTRY_FILE).read_text())
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert entry["lineage"] == {
        "data_version": MD5, "git_commit": _git(repo, "rev-parse", "HEAD"),
        "params_hash": params_hash({"models": {"scratch_cnn": model_spec(
            "scratch_cnn", params["models"]["scratch_cnn"])}}),
        "image": LOCAL_IMAGE}
    assert entry["data_version"] == MD5 and latest["lineage"] == entry["lineage"]


def test_gate_component_hands_on_the_models_lineage(tmp_path, monkeypatch):
    """The blessing carries the gate's own lineage; the blessed model, a copy of the
    trained one, keeps the training task's (where the model came from)."""
    from postergenre.components import gate as gate_component

    for key, value in CLUSTER_ENV.items():
        monkeypatch.setenv(key, value)
    _blessing(tmp_path)  # writes tmp_path/evaluation's metrics.json and thresholds.json
    from postergenre.genres import GENRES

    evaluation = tmp_path / "evaluation"
    (evaluation / "per_genre.json").write_text(json.dumps(
        {"scratch_cnn": {genre: {"support": 5, "ap": 0.4} for genre in GENRES}}))
    (evaluation / "bootstrap.json").write_text(json.dumps(
        {"reference_entry": None, "differences": {}}))
    trained_with = {"data_version": MD5, "git_commit": "a" * 40, "params_hash": "1" * 16,
                    "image": "registry.example/postergenre-gpu:1"}
    model = _artifact(dsl.Model, _trained(tmp_path), {"name": "scratch_cnn", **trained_with})
    blessing = _artifact(dsl.Artifact, tmp_path / "gate-blessing.json")
    blessed = _artifact(dsl.Model, tmp_path / "blessed")
    from postergenre.evaluation.report import DECISION_END, DECISION_START

    page = evaluation / "evaluation.html"
    page.write_text(f"<html><body>{DECISION_START}{DECISION_END}</body></html>")
    report = _artifact(dsl.HTML, tmp_path / "report.html")
    card = _artifact(dsl.Markdown, tmp_path / "decision.md")
    decision = gate_component.gate(_artifact(dsl.Artifact, evaluation), [model],
                                   decision_card=card, blessing=blessing, report=report,
                                   blessed_model=blessed, config={}, data_version=MD5)
    assert decision == "blessed"
    assert "BLESSED" in (tmp_path / "report.html").read_text()
    # The decision card: the decision, the model, its metrics beside the baselines'.
    text = (tmp_path / "decision.md").read_text()
    assert text.startswith("## Gate: BLESSED `scratch_cnn`") and "| null *(baseline)* |" in text
    assert card.metadata["decision"] == "blessed" and card.metadata["model"] == "scratch_cnn"
    assert report.metadata["params_hash"] == blessing.metadata["params_hash"]
    assert card.metadata["params_hash"] == blessing.metadata["params_hash"]
    assert {k: blessed.metadata[k] for k in LINEAGE_KEYS} == trained_with
    assert blessing.metadata["params_hash"] == params_hash({"gate": GateConfig()})
    assert blessing.metadata["image"] == CLUSTER_ENV[IMAGE_ENV]
