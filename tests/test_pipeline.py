"""The Kubeflow side: the compiled spec, and a whole local run with kfp.local."""

import json
from pathlib import Path

import pytest
import yaml

from postergenre.cli import main
from postergenre.pipelines.platform import ClusterSettings
from postergenre.pipelines.runner import (
    compile_pipeline,
    load_spec,
    parse_params,
    pipeline_parameters,
    run_local,
)

TRAINING_TASKS = {"train-scratch", "train-vgg16"}
CPU_IMAGE = "registry.example/postergenre:test"
GPU_IMAGE = "registry.example/postergenre-gpu:test"


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = compile_pipeline(tmp_path_factory.mktemp("ir") / "pipeline.yaml",
                            ClusterSettings(image=CPU_IMAGE, gpu_image=GPU_IMAGE))
    return load_spec(path)


def _executors(spec):
    return spec["deploymentSpec"]["executors"]


def _task_executor(spec):
    """task name -> its executor's container spec (tasks inside dsl.If included)."""
    tasks = {}

    def walk(dag):
        for name, task in dag.get("tasks", {}).items():
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                walk(component["dag"])
            else:
                tasks[name] = _executors(spec)[component["executorLabel"]]["container"]

    walk(spec["root"]["dag"])
    return tasks


def test_gpu_requests_on_exactly_the_two_training_tasks(spec):
    tasks = _task_executor(spec)
    assert {"ingest", "validate", "split", "augment", "train-scratch", "train-vgg16",
            "evaluate", "gate", "register"} <= set(tasks)
    with_gpu = {name for name, c in tasks.items()
                if c.get("resources", {}).get("accelerator", {}).get("resourceType")
                == "nvidia.com/gpu"}
    assert with_gpu == TRAINING_TASKS
    for name in TRAINING_TASKS:
        assert tasks[name]["resources"]["accelerator"]["resourceCount"] == "1"


def test_components_run_the_projects_images_without_pip_install(spec):
    for name, container in _task_executor(spec).items():
        assert container["image"] == (GPU_IMAGE if name in TRAINING_TASKS else CPU_IMAGE), name
        assert "pip install" not in " ".join(container["command"]), name


def test_one_image_for_everything_still_works(tmp_path):
    spec = load_spec(compile_pipeline(tmp_path / "p.yaml", image="one.example/img:1"))
    assert {c["image"] for c in _task_executor(spec).values()} == {"one.example/img:1"}


def test_compile_cli_takes_registry_tag_and_cluster_flags(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    assert main(["pipeline", "compile", "--output", str(out), "--registry", "ghcr.io/acme/",
                 "--tag", "2.0", "--gpu-count", "2", "--node-selector",
                 "cloud.google.com/gke-accelerator=nvidia-l4", "--pipeline-root",
                 "s3://bucket/root", "--cpu", "500m:1", "--memory", "2Gi"]) == 0
    spec = load_spec(out)
    images = {n: c["image"] for n, c in _task_executor(spec).items()}
    assert images["train-vgg16"] == "ghcr.io/acme/postergenre-gpu:2.0"
    assert images["gate"] == "ghcr.io/acme/postergenre:2.0"
    gate = _task_executor(spec)["gate"]["resources"]
    assert (gate["resourceCpuRequest"], gate["resourceCpuLimit"]) == ("500m", "1")
    assert (gate["resourceMemoryRequest"], gate["resourceMemoryLimit"]) == ("2Gi", "2Gi")
    assert _task_executor(spec)["train-scratch"]["resources"]["accelerator"][
        "resourceCount"] == "2"
    assert spec["defaultPipelineRoot"] == "s3://bucket/root"
    platform = list(yaml.safe_load_all(out.read_text()))[1]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-train-vgg16"]["nodeSelector"]["labels"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4"}
    for bad, message in ((["--cpu", "lots"], "not a Kubernetes quantity"),
                         (["--pipeline-root", "bucket"], "expected a URI"),
                         (["--gpu-count", "0"], "need >= 1 GPU")):
        assert main(["pipeline", "compile", "--output", str(out), *bad]) == 2
        assert message in capsys.readouterr().err


def test_register_runs_only_when_the_gate_blesses(spec):
    root = spec["root"]["dag"]["tasks"]
    condition = next(t for t in root.values() if "triggerPolicy" in t)
    assert "blessed" in condition["triggerPolicy"]["condition"]
    branch = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
    assert set(branch) == {"register", "batch-predict"}


def test_stages_pass_typed_artifacts(spec):
    outputs = {name: comp.get("outputDefinitions", {}).get("artifacts", {})
               for name, comp in spec["components"].items()}
    schema = {f"{c}.{a}": d["artifactType"]["schemaTitle"]
              for c, arts in outputs.items() for a, d in arts.items()}
    assert schema["comp-ingest.dataset"] == "system.Dataset"
    assert schema["comp-train-scratch.model"] == "system.Model"
    assert schema["comp-evaluate.metrics"] == "system.Metrics"
    assert schema["comp-evaluate.scratch_roc"] == "system.ClassificationMetrics"


def test_parse_params_types_and_errors():
    assert parse_params(["n_posters=60", "data_version=0123abcd"]) \
        == {"n_posters": 60, "data_version": "0123abcd"}
    with pytest.raises(ValueError, match="unknown pipeline parameter 'epochs'"):
        parse_params(["epochs=3"])
    with pytest.raises(ValueError, match="not a valid int"):
        parse_params(["n_posters=many"])


@pytest.mark.slow
def test_local_run_of_the_whole_pipeline(tmp_path):
    registry = tmp_path / "registry"
    # 48 posters miss some genres; a data-quality floor on genre support is not what
    # this test is about (tests/test_validate.py covers it).
    tiny = {"min_genre_support": 0} if "min_genre_support" in pipeline_parameters() else {}
    result = run_local(
        tmp_path / "root", n_posters=48, poster_width=48, poster_height=72, image_size=32,
        scratch_conv1_filters=4, scratch_conv2_filters=4, scratch_dense_units=8,
        scratch_epochs=1, vgg16_weights="none", vgg16_dense_units=8, vgg16_epochs=1,
        batch_size=16, registry=str(registry),
        # Tiny models on 48 posters cannot beat the null model: ask for no margin so
        # the blessed branch runs too (the gate's rules are tested on their own).
        min_f1_micro_margin=-1.0, min_map_margin=-1.0, max_hamming_loss_increase=1.0, **tiny)
    assert result["decision"] == "blessed"
    run_dir = Path(result["run_dir"])
    outputs = {task.name: json.loads((task / "executor_output.json").read_text())
               for task in run_dir.iterdir()}
    assert set(outputs) == {"ingest", "validate", "split", "augment", "train-scratch",
                            "train-vgg16", "evaluate", "gate", "register",
                            "batch-predict"}
    # File artifacts exist on disk; metrics artifacts carry their values in metadata.
    for task, name, path in (("ingest", "dataset", "labels.csv"),
                             ("validate", "validated", "summary.json"),
                             ("split", "splits", "test.csv"),
                             ("augment", "prepared", "manifest.json"),
                             ("train-scratch", "model", "model.keras"),
                             ("train-vgg16", "model", "model.keras"),
                             ("evaluate", "evaluation", "metrics.json"),
                             ("register", "registered", "model.keras"),
                             ("batch-predict", "predictions", "summary.json")):
        assert (run_dir / task / name / path).is_file(), (task, name)
    assert (run_dir / "gate" / "blessing").is_file()
    evaluate = outputs["evaluate"]["artifacts"]
    scalars = evaluate["metrics"]["artifacts"][0]["metadata"]
    assert {"scratch.f1_micro", "vgg16.map_macro", "null.hamming_loss"} <= set(scalars)
    roc = evaluate["scratch_roc"]["artifacts"][0]["metadata"]["confidenceMetrics"]
    assert len(roc) > 2
    assert outputs["gate"]["parameterValues"]["Output"] == "blessed"
    latest = json.loads((registry / "latest.json").read_text())
    assert (registry / latest["path"] / "model.keras").is_file()
