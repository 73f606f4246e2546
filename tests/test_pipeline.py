"""The Kubeflow side: the compiled spec, and a whole local run with kfp.local."""

import builtins
import json
from pathlib import Path

import pytest
import yaml

from postergenre.cli import main
from postergenre.configs import load_experiment
from postergenre.pipelines.platform import ClusterSettings
from postergenre.pipelines.runner import compile_pipeline, load_spec, parse_params, run_local
from postergenre.typed_config import read_params
from tests.conftest import DEMO_MODELS, REPO_ROOT

TRAINING_TASKS = {"train"}
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


def test_gpu_requests_on_exactly_the_training_task(spec):
    tasks = _task_executor(spec)
    assert {"ingest", "validate", "split", "augment", "train", "evaluate", "gate",
            "register"} <= set(tasks)
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
    assert images["train"] == "ghcr.io/acme/postergenre-gpu:2.0"
    assert images["gate"] == "ghcr.io/acme/postergenre:2.0"
    gate = _task_executor(spec)["gate"]["resources"]
    assert (gate["resourceCpuRequest"], gate["resourceCpuLimit"]) == ("500m", "1")
    assert (gate["resourceMemoryRequest"], gate["resourceMemoryLimit"]) == ("2Gi", "2Gi")
    assert _task_executor(spec)["train"]["resources"]["accelerator"]["resourceCount"] == "2"
    assert spec["defaultPipelineRoot"] == "s3://bucket/root"
    platform = list(yaml.safe_load_all(out.read_text()))[1]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-train"]["nodeSelector"]["labels"] == {
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
    assert schema["comp-train.model"] == "system.Model"
    assert schema["comp-evaluate.metrics"] == "system.Metrics"
    assert schema["comp-roc.curve"] == "system.ClassificationMetrics"
    assert schema["comp-gate.decision_card"] == "system.Markdown"


def test_one_roc_per_model_after_evaluate(spec):
    """The UI draws one curve per ClassificationMetrics artifact: a `roc` task per model
    (a loop over params.yaml's model names), each reading evaluate's output."""
    params = read_params(REPO_ROOT / "params.yaml")
    loops = [t for t in spec["root"]["dag"]["tasks"].values() if "parameterIterator" in t]
    (curves,) = [t for t in loops if "roc" in spec["components"][
        t["componentRef"]["name"]]["dag"]["tasks"]]
    assert json.loads(curves["parameterIterator"]["items"]["raw"]) == list(params["models"])
    assert "evaluate" in curves["dependentTasks"]


def test_one_training_task_per_model_of_params_yaml(spec):
    """The models are data: the fan-out runs over params.yaml's model names."""
    params = read_params(REPO_ROOT / "params.yaml")
    loop = next(t for t in spec["root"]["dag"]["tasks"].values()
                if "parameterIterator" in t)
    items = json.loads(loop["parameterIterator"]["items"]["raw"])
    assert items == list(params["models"])


def _leaves(value, prefix=""):
    """{'a.b': 1, ...} for every leaf of nested mappings."""
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(_leaves(inner, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def test_every_params_yaml_value_is_the_compiled_default(spec):
    """One experiment: each params.yaml section is one pipeline parameter, named after it,
    and every value written in params.yaml is that parameter's compiled default."""
    params = read_params(REPO_ROOT / "params.yaml")
    declared = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) <= set(declared)
    for section, values in params.items():
        assert declared[section]["parameterType"] == "STRUCT", section
        compiled = _leaves(declared[section]["defaultValue"])
        for key, value in _leaves(values).items():
            assert key in compiled, f"{section}.{key} is not in the compiled pipeline"
            assert compiled[key] == value, (f"{section}.{key}", compiled[key], value)
    # Nothing else: the run-level parameters are the few that are not settings.
    assert set(declared) - set(params) == {"source", "data_version", "registry",
                                           "batch_predict_runner"}


def test_parse_params_types_and_errors():
    assert parse_params(["source=demo", "data_version=0123abcd", 'gate={"epsilon": 0.1}']) \
        == {"source": "demo", "data_version": "0123abcd", "gate": {"epsilon": 0.1}}
    with pytest.raises(ValueError, match="unknown pipeline parameter 'epochs'"):
        parse_params(["epochs=3"])
    with pytest.raises(ValueError, match="not a valid dict"):
        parse_params(["gate=strict"])


def test_a_bad_setting_is_named_before_anything_compiles(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    assert main(["pipeline", "compile", "--output", str(out), "--set",
                 "augment.image_size=big"]) == 2
    assert "augment.image_size: 'big' is not an integer" in capsys.readouterr().err
    assert main(["pipeline", "compile", "--output", str(out), "--set",
                 "models.scratch_cnn.epoch=3"]) == 2
    assert "models.scratch_cnn.epoch: unknown setting" in capsys.readouterr().err
    assert not out.exists()


def tiny_experiment():
    """params.yaml with params-tiny.yaml over it: a whole run in seconds."""
    return load_experiment([REPO_ROOT / "params.yaml", REPO_ROOT / "params-tiny.yaml"])


@pytest.mark.slow
def test_local_run_of_the_whole_pipeline(tmp_path):
    from postergenre.lineage import LINEAGE_KEYS, LOCAL_IMAGE

    registry = tmp_path / "registry"
    experiment = tiny_experiment()
    print_before = builtins.print
    result = run_local(tmp_path / "root", experiment, registry=str(registry))
    assert result["decision"] == "blessed"
    # kfp.local's parallel trainings leave `print` indenting unless run_local restores it.
    assert builtins.print is print_before
    run_dir = Path(result["run_dir"])
    outputs = {task.name: json.loads((task / "executor_output.json").read_text())
               for task in run_dir.iterdir() if (task / "executor_output.json").is_file()}
    assert set(outputs) == {"ingest", "validate", "split", "augment", "evaluate", "gate",
                            "register", "batch-predict"}
    # Each model's ROC as its own ClassificationMetrics artifact (the UI draws one each).
    curves = {}
    for task in run_dir.glob("for-loop-*-iteration-*/roc"):
        curve = json.loads((task / "executor_output.json").read_text())
        metadata = curve["artifacts"]["curve"]["artifacts"][0]["metadata"]
        assert len(metadata["confidenceMetrics"]) > 2
        assert metadata["display_name"] == f"{metadata['model']} ROC (test, micro)"
        curves[metadata["model"]] = metadata
    assert set(curves) == set(DEMO_MODELS)
    # One training task per model (kfp.local names each iteration's folder).
    trained = sorted(run_dir.glob("for-loop-*-iteration-*/train"))
    assert len(trained) == len(experiment.models) == len(DEMO_MODELS)
    names = set()
    for task in trained:
        out = json.loads((task / "executor_output.json").read_text())
        model = out["artifacts"]["model"]["artifacts"][0]["metadata"]
        names.add(model["name"])
        assert (task / "model" / "model.keras").is_file()
        # The UI's labels and the Compare view's metric keys name the model.
        metrics = out["artifacts"]["metrics"]["artifacts"][0]["metadata"]
        assert model["display_name"] == model["name"]
        assert metrics["display_name"] == f"{model['name']} metrics"
        assert f"{model['name']}.epochs_run" in metrics
        assert not [k for k in metrics if not k.startswith(f"{model['name']}.")
                    and k not in ("display_name", *LINEAGE_KEYS)], metrics
    assert names == set(DEMO_MODELS)
    # File artifacts exist on disk; metrics artifacts carry their values in metadata.
    for task, name, path in (("ingest", "dataset", "labels.csv"),
                             ("validate", "validated", "summary.json"),
                             ("split", "splits", "test.csv"),
                             ("augment", "prepared", "manifest.json"),
                             ("evaluate", "evaluation", "metrics.json"),
                             ("gate", "blessed_model", "model.keras"),
                             ("register", "registered", "model.keras"),
                             ("batch-predict", "predictions", "summary.json")):
        assert (run_dir / task / name / path).is_file(), (task, name)
    assert (run_dir / "gate" / "blessing").is_file()
    # The gate's report artifact: evaluate's page opening with the decision.
    assert "BLESSED" in (run_dir / "gate" / "report").read_text()
    evaluate = outputs["evaluate"]["artifacts"]
    scalars = evaluate["metrics"]["artifacts"][0]["metadata"]
    assert {*(f"{m}.map_macro" for m in DEMO_MODELS), "null.hamming_loss"} <= set(scalars)
    assert outputs["gate"]["parameterValues"]["Output"] == "blessed"
    # The decision card the gate's Visualizations show: the decision, the model, its
    # metrics beside the baselines'.
    card = (run_dir / "gate" / "decision_card").read_text()
    gated = json.loads((run_dir / "gate" / "blessing").read_text())
    assert card.startswith(f"## Gate: BLESSED `{gated['model']}`")
    assert f"| **{gated['model']}** (blessed) |" in card and "| null *(baseline)* |" in card
    card_meta = outputs["gate"]["artifacts"]["decision_card"]["artifacts"][0]["metadata"]
    assert card_meta["display_name"] == "decision card"
    blessed = outputs["gate"]["artifacts"]["blessed_model"]["artifacts"][0]["metadata"]
    assert blessed["display_name"] == f"{blessed['name']} (blessed)"
    registered = outputs["register"]["artifacts"]["registered"]["artifacts"][0]["metadata"]
    assert registered["display_name"] == f"{blessed['name']} (registered)"
    latest = json.loads((registry / "latest.json").read_text())
    assert latest["model"] in names
    assert (registry / latest["path"] / "model.keras").is_file()
    # Lineage on every output artifact of every task (kfp.local: image `local`).
    for task, out in outputs.items():
        for name, artifacts in out["artifacts"].items():
            metadata = artifacts["artifacts"][0]["metadata"]
            assert set(LINEAGE_KEYS) <= set(metadata), (task, name)
            assert metadata["image"] == LOCAL_IMAGE, (task, name)


def test_compile_cli_node_selector_shortcuts_pull_secrets_and_backend_features(tmp_path, capsys):
    """`--node-selector gke|eks[:VALUE]`, `--image-pull-secret`, and the settings only newer
    KFP backends know: off by default, on with their flag or with --kfp-backend."""
    out = tmp_path / "p.yaml"
    images = ["--image", CPU_IMAGE, "--gpu-image", GPU_IMAGE]

    def executors():
        return list(yaml.safe_load_all(out.read_text()))[1]["platforms"]["kubernetes"][
            "deploymentSpec"]["executors"]

    for flag, label in (("gke", {"cloud.google.com/gke-accelerator": "nvidia-l4"}),
                        ("gke:nvidia-tesla-t4", {"cloud.google.com/gke-accelerator":
                                                 "nvidia-tesla-t4"}),
                        ("eks", {"eks.amazonaws.com/nodegroup": "gpu"}),
                        ("eks:gpu-a10", {"eks.amazonaws.com/nodegroup": "gpu-a10"}),
                        ("nvidia", {"nvidia.com/gpu.present": "true"})):
        assert main(["pipeline", "compile", "--output", str(out), *images,
                     "--node-selector", flag]) == 0, flag
        assert executors()["exec-train"]["nodeSelector"]["labels"] == label, flag
    assert main(["pipeline", "compile", "--output", str(out), *images,
                 "--image-pull-secret", "regcred", "--image-pull-secret", "mirror"]) == 0
    for executor in executors().values():
        assert [s["secretName"] for s in executor["imagePullSecret"]] == ["regcred", "mirror"]
        assert "securityContext" not in executor
    assert "Needs Kubeflow Pipelines backend 2.14.0 or newer" in capsys.readouterr().out
    assert main(["pipeline", "compile", "--output", str(out), *images,
                 "--kfp-backend", "2.16.0"]) == 0
    assert all("securityContext" in e for e in executors().values())
    assert "backend 2.16.0 or newer" in capsys.readouterr().out
    assert main(["pipeline", "compile", "--output", str(out), *images, "--kfp-backend",
                 "2.16.0", "--no-security-context"]) == 0
    assert not any("securityContext" in e for e in executors().values())
    assert "backend 2.15.0 or newer" in capsys.readouterr().out
    assert main(["pipeline", "compile", "--output", str(out), *images, "--kfp-backend",
                 "2.15.0", "--security-context"]) == 2
    assert "--kfp-backend 2.15.0: --security-context needs 2.16.0" in capsys.readouterr().err
    assert main(["pipeline", "compile", "--output", str(out), *images,
                 "--model-registry", "registry"]) == 2
    assert "model_registry: 'registry', expected an s3:// URI" in capsys.readouterr().err
    # GKE: the images reach GCS only through its S3-compatible API (no gcsfs).
    assert main(["pipeline", "compile", "--output", str(out), *images,
                 "--model-registry", "gs://bucket/registry"]) == 2
    assert "GCS through its XML API with HMAC keys" in capsys.readouterr().err


def test_project_s3_credentials_reach_aws_names_in_process_only():
    """The tasks get POSTERGENRE_AWS_* (not the launcher's AWS_*); the library maps them
    to AWS_* in its own process before it touches S3."""
    from postergenre.data.storage import use_project_credentials

    env = {"POSTERGENRE_AWS_ACCESS_KEY_ID": "AKIAPROJECT", "AWS_ACCESS_KEY_ID": "AKIAOTHER",
           "POSTERGENRE_AWS_SECRET_ACCESS_KEY": "secret", "POSTERGENRE_AWS_ENDPOINT_URL": "",
           "AWS_ENDPOINT_URL": "http://minio:9000"}
    assert use_project_credentials(env) == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    assert env["AWS_ACCESS_KEY_ID"] == "AKIAPROJECT" and env["AWS_SECRET_ACCESS_KEY"] == "secret"
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"  # an empty one does not override
    assert use_project_credentials({}) == []  # IRSA / Workload Identity: nothing to map


def test_local_runs_keep_params_yaml_require_gpu():
    """kfp.local trains on whatever this machine has: the cluster's require_gpu override
    stays out of the local pipeline's defaults (and out of `-p` parsing)."""
    import inspect

    from postergenre.pipelines.pipeline import create_pipeline
    from postergenre.pipelines.runner import LOCAL_SETTINGS, pipeline_parameters

    assert LOCAL_SETTINGS.require_gpu is False
    params = read_params(REPO_ROOT / "params.yaml")
    local = pipeline_parameters()["models"].default
    assert {name: entry.get("require_gpu", False) for name, entry in local.items()} == {
        name: entry.get("require_gpu", False) for name, entry in params["models"].items()}
    cluster = create_pipeline(ClusterSettings(image=CPU_IMAGE, gpu_image=GPU_IMAGE))
    defaults = {p.name: p.default
                for p in inspect.signature(cluster.pipeline_func).parameters.values()}
    assert all(entry["require_gpu"] for entry in defaults["models"].values())
