"""The compiled pipeline's cluster settings against a golden file.

The golden file (tests/golden/cluster_settings.yaml) holds, per task, what the cluster
sees: image, resources, accelerator, node selector, tolerations, volumes, Secrets and
ConfigMaps by name, security context, caching, retries and the condition it runs under, plus
how ingest gets the data version. It leaves out the components' embedded source code
and the kfp version strings, which change with every stage edit or SDK bump and say
nothing about the cluster. After a deliberate change, regenerate it with
`UPDATE_GOLDEN=1 pytest tests/test_compile_golden.py` and review the diff.
The assertions below state the rules on their own, so a regenerated golden file
cannot hide a broken rule. The golden file is compiled with every opt-in setting on
(the newest backend's view); the default compile is checked against the fields the
oldest supported KFP backend (2.14.0) knows.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from postergenre.pipelines.compat import (
    FIELDS_SINCE,
    OLDEST_SUPPORTED_BACKEND,
    TWINNED_SINCE,
    fields_used,
    missing_on,
    required_backend,
    version_key,
)
from postergenre.pipelines.platform import ClusterSettings
from postergenre.pipelines.runner import compile_pipeline

GOLDEN = Path(__file__).parent / "golden" / "cluster_settings.yaml"
TRAINING = {"train"}
# Values that must never reach the YAML: set in the environment while compiling.
SENTINELS = {
    "TMDB_API_KEY": "sentinel-tmdb-key-5f3a9c",
    "TMDB_READ_ACCESS_TOKEN": "sentinel-tmdb-token-e21b77",
    "AWS_ACCESS_KEY_ID": "AKIASENTINEL0000KEY",
    "AWS_SECRET_ACCESS_KEY": "sentinel/aws/secret+d41d8cd98f",
    "AWS_ENDPOINT_URL": "http://sentinel-endpoint.invalid:9000",
    "POSTERGENRE_AWS_ACCESS_KEY_ID": "AKIASENTINEL1111KEY",
    "POSTERGENRE_AWS_SECRET_ACCESS_KEY": "sentinel/postergenre/secret+9e107d9d",
    "POSTERGENRE_AWS_ENDPOINT_URL": "http://sentinel-project-endpoint.invalid:9000",
    "KFP_TOKEN": "sentinel-kfp-bearer-0b9e",
}
IMAGES = {"image": "registry.example/postergenre@sha256:" + "c" * 64,
          "gpu_image": "registry.example/postergenre-gpu@sha256:" + "d" * 64}
# Every opt-in setting on: what the golden file holds.
# A fixed commit: the golden file must not change with every commit of the checkout.
GIT_COMMIT = "0123456789abcdef0123456789abcdef01234567"
FULL = ClusterSettings(**IMAGES, pipeline_root="s3://postergenre-artifacts/pipeline-root",
                       model_registry="s3://postergenre-artifacts/registry",
                       image_pull_secrets=("regcred",), security_context=True,
                       optional_secrets=True, git_commit=GIT_COMMIT)
# The kfp_kubernetes fields KFP 2.14.0 knows (kubernetes_platform/proto/
# kubernetes_executor_config.proto at tag 2.14.0; its go.mod replaces the module with that
# folder): the oldest backend the pipeline supports (dsl.Collected needs 2.14.0). 2.15.0
# adds SecretAsEnv/ConfigMapAsEnv.optional, 2.16.0 securityContext and PvcMount.subPath.
K8S_FIELDS_2_14_0 = {
    "KubernetesExecutorConfig": {
        "activeDeadlineSeconds", "configMapAsEnv", "configMapAsVolume", "emptyDirMounts",
        "enabledSharedMemory", "fieldPathAsEnv", "genericEphemeralVolume", "imagePullPolicy",
        "imagePullSecret", "nodeAffinity", "nodeSelector", "podAffinity", "podMetadata",
        "pvcMount", "secretAsEnv", "secretAsVolume", "tolerations"},
    "EnabledSharedMemory": {"size", "volumeName"},
    "SecretAsVolume": {"mountPath", "optional", "secretName", "secretNameParameter"},
    "SecretAsEnv": {"keyToEnv", "secretName", "secretNameParameter"},
    "SecretAsEnv.SecretKeyToEnvMap": {"envVar", "secretKey"},
    "PvcMount": {"componentInputParameter", "constant", "mountPath", "pvcNameParameter",
                 "taskOutputParameter"},
    "CreatePvc": {"accessModes", "annotations", "defaultStorageClass", "pvcName",
                  "pvcNameSuffix", "size", "storageClassName", "volumeName"},
    "DeletePvc": {"componentInputParameter", "constant", "taskOutputParameter"},
    "NodeSelector": {"labels", "nodeSelectorJson"},
    "PodMetadata": {"annotations", "labels"},
    "ConfigMapAsVolume": {"configMapName", "configMapNameParameter", "mountPath", "optional"},
    "ConfigMapAsEnv": {"configMapName", "configMapNameParameter", "keyToEnv"},
    "ConfigMapAsEnv.ConfigMapKeyToEnvMap": {"configMapKey", "envVar"},
    "GenericEphemeralVolume": {"accessModes", "defaultStorageClass", "metadata", "mountPath",
                               "size", "storageClassName", "volumeName"},
    "ImagePullSecret": {"secretName", "secretNameParameter"},
    "FieldPathAsEnv": {"fieldPath", "name"},
    "Toleration": {"effect", "key", "operator", "tolerationJson", "tolerationSeconds", "value"},
    "SelectorRequirement": {"key", "operator", "values"},
    "NodeAffinityTerm": {"matchExpressions", "matchFields", "nodeAffinityJson", "weight"},
    "PodAffinityTerm": {"anti", "matchNamespaceExpressions", "matchNamespaceLabels",
                        "matchPodExpressions", "matchPodLabels", "namespaces", "topologyKey",
                        "weight"},
    "EmptyDirMount": {"medium", "mountPath", "sizeLimit", "volumeName"},
}


def _compile(path: Path, settings: ClusterSettings) -> tuple[str, dict, dict]:
    """(YAML text, pipeline spec, platform spec), compiled with the sentinel secrets in
    the environment."""
    saved = {k: os.environ.get(k) for k in SENTINELS}
    os.environ.update(SENTINELS)
    try:
        compile_pipeline(path, settings)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    text = path.read_text()
    spec, platform = yaml.safe_load_all(text)
    return text, spec, platform


def _executors(platform: dict) -> dict:
    return platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[str, dict, dict]:
    """(YAML text, pipeline spec, kubernetes platform executors) with every opt-in
    setting on."""
    text, spec, platform = _compile(tmp_path_factory.mktemp("golden") / "pipeline.yaml", FULL)
    return text, spec, _executors(platform)


@pytest.fixture(scope="module")
def default_compiled(tmp_path_factory) -> tuple[str, dict, dict]:
    """(YAML text, pipeline spec, platform spec) with the default settings (images
    given, as they must be)."""
    return _compile(tmp_path_factory.mktemp("default") / "pipeline.yaml",
                    ClusterSettings(**IMAGES))


def _tasks(spec: dict) -> dict[str, dict]:
    """task name -> {task spec, component, condition}, tasks inside dsl.If included."""
    found: dict[str, dict] = {}

    def walk(dag: dict, condition: str | None) -> None:
        for name, task in dag.get("tasks", {}).items():
            component = spec["components"][task["componentRef"]["name"]]
            cond = task.get("triggerPolicy", {}).get("condition", condition)
            if "dag" in component:
                walk(component["dag"], cond)
            else:
                found[name] = {"task": task, "component": component, "condition": cond}

    walk(spec["root"]["dag"], None)
    return found


def summarize(spec: dict, executors: dict) -> dict:
    """The cluster-facing part of a compiled pipeline, version strings removed."""
    summary: dict = {"pipelineRoot": spec.get("defaultPipelineRoot"), "tasks": {}}
    for name, info in sorted(_tasks(spec).items()):
        label = info["component"]["executorLabel"]
        container = spec["deploymentSpec"]["executors"][label]["container"]
        resources = {k: v for k, v in container.get("resources", {}).items()
                     if k.startswith("resource") or k == "accelerator"}
        summary["tasks"][name] = {
            "image": container["image"],
            "resources": resources,
            "kubernetes": executors.get(label, {}),
            "caching": info["task"].get("cachingOptions", {}).get("enableCache", False),
            "retry": info["task"].get("retryPolicy"),
            "condition": info["condition"],
        }
    ingest_inputs = _tasks(spec)["ingest"]["task"]["inputs"]["parameters"]
    summary["ingestDataVersion"] = ingest_inputs.get("data_version")
    text = yaml.safe_dump(summary, sort_keys=True)
    return yaml.safe_load(re.sub(r"kfp-\d+\.\d+\.\d+", "kfp-VERSION", text))


def test_matches_the_golden_file(compiled):
    _, spec, executors = compiled
    summary = summarize(spec, executors)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text("# Generated by tests/test_compile_golden.py (UPDATE_GOLDEN=1).\n"
                          + yaml.safe_dump(summary, sort_keys=True))
    assert summary == yaml.safe_load(GOLDEN.read_text())


def test_gpu_pool_settings_on_exactly_the_training_tasks(compiled):
    _, spec, executors = compiled
    tasks = _tasks(spec)
    for name, info in tasks.items():
        label = info["component"]["executorLabel"]
        resources = spec["deploymentSpec"]["executors"][label]["container"]["resources"]
        k8s = executors.get(label, {})
        gpu = resources.get("accelerator", {})
        if name in TRAINING:
            assert (gpu["resourceType"], gpu["resourceCount"]) == ("nvidia.com/gpu", "1")
            assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
            assert k8s["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                           "effect": "NoSchedule"}]
            assert k8s["emptyDirMounts"] == [{"volumeName": "dshm", "mountPath": "/dev/shm",
                                              "medium": "Memory", "sizeLimit": "8Gi"}]
        else:
            assert not gpu, name
            assert not {"nodeSelector", "tolerations"} & set(k8s), name
            # No /dev/shm (ingest's scratch space: test_ingest_gets_bounded_scratch_space).
            assert "/dev/shm" not in [m["mountPath"] for m in k8s.get("emptyDirMounts", [])]
        # Requests and limits on every task, and a non-root user.
        for key in ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest",
                    "resourceMemoryLimit"):
            assert resources.get(key), (name, key)
        # Opt-in (KFP 2.16+): a non-root user and group on every task.
        assert k8s["securityContext"] == {"runAsUser": "10001", "runAsGroup": "10001",
                                          "runAsNonRoot": True}, name
        assert k8s["imagePullSecret"][0]["secretName"] == "regcred", name


def test_secrets_by_name_only(compiled):
    text, spec, executors = compiled
    for value in SENTINELS.values():
        assert value not in text
    tasks = _tasks(spec)
    with_secrets = {name: [s["secretName"] for s in executors.get(
        info["component"]["executorLabel"], {}).get("secretAsEnv", [])]
        for name, info in tasks.items()}
    assert with_secrets.pop("ingest") == ["postergenre-tmdb", "postergenre-s3"]
    for s3_task in ("register", "evaluate", "train"):
        assert with_secrets.pop(s3_task) == ["postergenre-s3"], s3_task
    assert not any(with_secrets.values()), with_secrets  # no other task sees a secret
    ingest = executors[tasks["ingest"]["component"]["executorLabel"]]
    env = {m["envVar"] for s in ingest["secretAsEnv"] for m in s["keyToEnv"]}
    # The S3 credentials under the project's names: KFP's launcher, in the same
    # container, reads AWS_* for its own artifact store and must not get these.
    assert env == {"TMDB_API_KEY", "TMDB_READ_ACCESS_TOKEN", "POSTERGENRE_AWS_ACCESS_KEY_ID",
                   "POSTERGENRE_AWS_SECRET_ACCESS_KEY"}
    assert ingest["configMapAsEnv"][0]["keyToEnv"] == [
        {"configMapKey": "AWS_ENDPOINT_URL", "envVar": "POSTERGENRE_AWS_ENDPOINT_URL"}]
    assert not re.search(r"envVar: AWS_", text)
    # --optional-secrets (KFP 2.15+): a missing Secret or ConfigMap is skipped, so IRSA /
    # Workload Identity clusters need no S3 Secret at all.
    assert all(s["optional"] is True for s in ingest["secretAsEnv"] + ingest["configMapAsEnv"])


def test_without_optional_secrets_every_secret_must_exist(default_compiled):
    """KFP < 2.15 does not know `optional` (2.14 refuses the run): the default compile
    holds no `optional` field at all, which means the object must exist."""
    _, spec, platform = default_compiled
    executors = _executors(platform)
    ingest = executors[_tasks(spec)["ingest"]["component"]["executorLabel"]]
    assert [s["secretName"] for s in ingest["secretAsEnv"]] == ["postergenre-tmdb",
                                                                 "postergenre-s3"]
    for entry in ingest["secretAsEnv"] + ingest["configMapAsEnv"]:
        assert "optional" not in entry, entry
    assert not any("securityContext" in e for e in executors.values())


def test_no_s3_secret_for_irsa(tmp_path):
    """s3_secret='' (IRSA / Workload Identity: the runs' service account reaches S3)
    injects no S3 Secret anywhere, on any backend."""
    _, spec, platform = _compile(tmp_path / "p.yaml", ClusterSettings(**IMAGES, s3_secret=""))
    for executor in _executors(platform).values():
        assert "postergenre-s3" not in [s["secretName"] for s in executor.get("secretAsEnv", [])]


def _kfp_kubernetes_fields(used: dict[str, str]) -> list[tuple[str, str]]:
    prefix = "kfp_kubernetes."
    return [tuple(name.lstrip("?")[len(prefix):].rsplit(".", 1)) for name in used
            if name.lstrip("?").startswith(prefix)]


def test_default_compile_runs_on_the_oldest_supported_backend(default_compiled):
    """The default compile holds no field KFP 2.14.0 lacks: its platform spec against the
    2.14.0 kubernetes_platform proto (field by field), its pipeline spec against the
    version table (compat.FIELDS_SINCE)."""
    text, spec, platform = default_compiled
    used = fields_used(spec, platform)
    assert not [name for name in used if name.startswith("?")]  # all known to the SDK
    k8s = _kfp_kubernetes_fields(used)
    assert ("SecretAsEnv", "keyToEnv") in k8s and ("KubernetesExecutorConfig",
                                                     "emptyDirMounts") in k8s
    unknown = [f"{m}.{f}" for m, f in k8s if f not in K8S_FIELDS_2_14_0.get(m, set())]
    assert not unknown, f"fields KFP 2.14.0 does not know: {unknown}"
    oldest = version_key(OLDEST_SUPPORTED_BACKEND)
    newer = {name: FIELDS_SINCE[name] for name in used
             if name in FIELDS_SINCE and version_key(FIELDS_SINCE[name]) > oldest}
    assert not newer, newer
    assert required_backend(spec, platform)[0] == OLDEST_SUPPORTED_BACKEND == \
        ClusterSettings().min_backend_version() == "2.14.0"
    assert missing_on("2.14.0", spec, platform) == []
    # The fan-in (dsl.Collected) is what rules out older backends (Kubeflow 1.9, 1.10).
    assert missing_on("2.5.0", spec, platform) == [
        "dsl.Collected, a loop's artifacts as one input (since 2.14.0)"]
    assert "Needs Kubeflow Pipelines backend 2.14.0 or newer (Kubeflow 1.11.0, 26.03)." \
        in spec["pipelineInfo"]["description"]


def test_opt_in_features_declare_the_backend_they_need(compiled, tmp_path):
    _, spec, executors = compiled
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}
    assert FULL.min_backend_version() == "2.16.0"
    assert required_backend(spec, platform)[0] == "2.16.0"
    assert missing_on("2.16.0", spec, platform) == []
    assert missing_on("2.15.0", spec, platform) == [
        "KubernetesExecutorConfig.securityContext (since 2.16.0)"]
    assert "Needs Kubeflow Pipelines backend 2.16.0 or newer (Kubeflow 26.03)." \
        in spec["pipelineInfo"]["description"]
    optional_only = ClusterSettings(**IMAGES, optional_secrets=True)
    assert optional_only.min_backend_version() == "2.15.0"
    _, spec, platform = _compile(tmp_path / "p.yaml", optional_only)
    assert required_backend(spec, platform)[0] == "2.15.0"
    assert missing_on("2.14.4", spec, platform) == [
        "ConfigMapAsEnv.optional (since 2.15.0)", "SecretAsEnv.optional (since 2.15.0)"]
    assert ClusterSettings.features_for("2.15.0") == {"security_context": False,
                                                     "optional_secrets": True}


def test_version_table_agrees_with_the_2_14_proto():
    """compat.FIELDS_SINCE, which `submit` checks packages with, says the same as the
    2.14.0 snapshot above for every kfp_kubernetes field the installed SDK knows."""
    from kfp.kubernetes import kubernetes_executor_config_pb2 as pb

    installed = []

    def visit(descriptor, prefix=""):
        for field in descriptor.fields:
            installed.append((f"{prefix}{descriptor.name}", field.json_name))
        for nested in descriptor.nested_types:
            if not nested.GetOptions().map_entry:
                visit(nested, f"{prefix}{descriptor.name}.")

    for descriptor in pb.DESCRIPTOR.message_types_by_name.values():
        visit(descriptor)
    oldest = version_key(OLDEST_SUPPORTED_BACKEND)
    for message, field in installed:
        since = FIELDS_SINCE.get(f"kfp_kubernetes.{message}.{field}", "2.2.0")
        known_then = field in K8S_FIELDS_2_14_0.get(message, set())
        assert known_then == (version_key(since) <= oldest), (message, field, since)
    assert not set(TWINNED_SINCE) & set(FIELDS_SINCE)


def test_register_only_under_the_gates_if_and_caching_policy(compiled):
    _, spec, _ = compiled
    tasks = _tasks(spec)
    conditions = {name: info["condition"] for name, info in tasks.items() if info["condition"]}
    assert set(conditions) == {"register", "batch-predict"}
    for task in conditions:
        assert re.search(r"pipelinechannel--gate-Output.*==.*'blessed'", conditions[task])
    cached = {name for name, info in tasks.items()
              if info["task"].get("cachingOptions", {}).get("enableCache")}
    # Ingest (TMDb) and the two tasks that read or write the registry, whose state no
    # input describes, never reuse a cached result.
    assert cached == set(tasks) - {"ingest", "evaluate", "register"}


def test_registry_tasks_stay_uncached_even_with_cache_ingest(tmp_path):
    _, spec, _ = _compile(tmp_path / "p.yaml", ClusterSettings(**IMAGES, cache_ingest=True))
    uncached = {name for name, info in _tasks(spec).items()
                if not info["task"].get("cachingOptions", {}).get("enableCache")}
    assert uncached == {"evaluate", "register"}


def test_every_task_retries_with_backoff(compiled, tmp_path):
    _, spec, _ = compiled
    for name, info in _tasks(spec).items():
        assert info["task"]["retryPolicy"] == {
            "maxRetryCount": 2, "backoffDuration": "60s", "backoffFactor": 2.0,
            "backoffMaxDuration": "43200s"}, name
    _, spec, _ = _compile(tmp_path / "p.yaml", ClusterSettings(
        **IMAGES, retries=5, retry_backoff="2m", retry_backoff_factor=3,
        retry_backoff_max="1h"))
    for info in _tasks(spec).values():
        assert info["task"]["retryPolicy"] == {
            "maxRetryCount": 5, "backoffDuration": "120s", "backoffFactor": 3.0,
            "backoffMaxDuration": "3600s"}
    _, spec, _ = _compile(tmp_path / "none.yaml", ClusterSettings(**IMAGES, retries=0))
    assert not any("retryPolicy" in info["task"] for info in _tasks(spec).values())
    for bad, message in (({"retries": -1}, "retries"),
                         ({"retry_backoff": "soon"}, "retry_backoff"),
                         ({"retry_backoff_factor": 1.5}, "whole number")):
        with pytest.raises(ValueError, match=message):
            ClusterSettings(**IMAGES, **bad)


def test_training_requires_a_gpu_on_the_cluster(compiled, tmp_path):
    """The compiled `models` default sets require_gpu on every model: a training pod that
    sees no GPU fails at once instead of training on the CPU for hours."""
    _, spec, _ = compiled
    models = spec["root"]["inputDefinitions"]["parameters"]["models"]["defaultValue"]
    assert models and all(entry["require_gpu"] is True for entry in models.values())
    _, spec, _ = _compile(tmp_path / "p.yaml", ClusterSettings(**IMAGES, require_gpu=False))
    models = spec["root"]["inputDefinitions"]["parameters"]["models"]["defaultValue"]
    assert not any(entry["require_gpu"] for entry in models.values())  # params.yaml's


def test_data_version_feeds_ingest(compiled):
    _, spec, _ = compiled
    assert spec["root"]["inputDefinitions"]["parameters"]["data_version"][
        "parameterType"] == "STRING"
    ingest = _tasks(spec)["ingest"]["task"]["inputs"]["parameters"]
    assert ingest["data_version"] == {"componentInputParameter": "data_version"}


def _resolve(spec: dict, run_params: dict) -> dict[str, dict]:
    """task name -> the parameter values KFP resolves for it in a run with `run_params`
    (the rest at their compiled defaults): what the backend's cache key holds as
    InputParameterValues. Another task's output stands as `<output of TASK>`, the loop
    item as `<loop item>`."""
    declared = spec["root"]["inputDefinitions"]["parameters"]
    scope = {name: run_params.get(name, d.get("defaultValue")) for name, d in declared.items()}
    resolved: dict[str, dict] = {}

    def value(source: dict, scope: dict):
        if "componentInputParameter" in source:
            name = source["componentInputParameter"]
            return scope.get(name, "<loop item>")
        if "taskOutputParameter" in source:
            return f"<output of {source['taskOutputParameter']['producerTask']}>"
        return source["runtimeValue"]["constant"]

    def walk(dag: dict, scope: dict) -> None:
        for name, task in dag["tasks"].items():
            values = {key: value(source, scope)
                      for key, source in task.get("inputs", {}).get("parameters", {}).items()}
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                walk(component["dag"], values)
            else:
                resolved[name] = values

    walk(spec["root"]["dag"], scope)
    return resolved


def test_the_data_version_is_in_every_tasks_cache_key(compiled):
    """KFP's cache key holds a task's resolved input parameters: data_version is one of
    every task's, so a new data version reruns every step (an old one reuses them with
    --cache-ingest), while a change of one section reruns only the tasks that read it."""
    _, spec, _ = compiled
    first = _resolve(spec, {"data_version": "a" * 32})
    second = _resolve(spec, {"data_version": "b" * 32})
    # The nine stages and the ROC task (one per model, in its own loop).
    assert set(first) == set(_tasks(spec)) and len(first) == 10
    for name in first:
        assert first[name]["data_version"] == "a" * 32, name
        assert {k for k in first[name] if first[name][k] != second[name][k]} == \
            {"data_version"}, name
    other_gate = _resolve(spec, {"data_version": "a" * 32, "gate": {"epsilon": 0.5}})
    assert {name for name in first if first[name] != other_gate[name]} == {"gate"}


def test_every_task_gets_its_image_and_the_commit_for_lineage(compiled, default_compiled):
    """postergenre.lineage reads POSTERGENRE_IMAGE / POSTERGENRE_GIT_COMMIT: pod
    annotations through the Downward API, not pipeline-spec env variables (those are in
    KFP's cache key, so a new commit would rerun every cached step)."""
    from postergenre.lineage import GIT_COMMIT_ENV, IMAGE_ENV
    from postergenre.pipelines.platform import LINEAGE_ANNOTATIONS

    _, spec, executors = compiled
    for name, info in _tasks(spec).items():
        label = info["component"]["executorLabel"]
        container = spec["deploymentSpec"]["executors"][label]["container"]
        assert "env" not in container, name
        k8s = executors[label]
        annotations = k8s["podMetadata"]["annotations"]
        assert annotations == {LINEAGE_ANNOTATIONS[IMAGE_ENV]: container["image"],
                               LINEAGE_ANNOTATIONS[GIT_COMMIT_ENV]: GIT_COMMIT}, name
        assert k8s["fieldPathAsEnv"] == [
            {"name": env, "fieldPath": f"metadata.annotations['{LINEAGE_ANNOTATIONS[env]}']"}
            for env in (IMAGE_ENV, GIT_COMMIT_ENV)], name
    # Without a commit given, the compiling checkout's.
    from postergenre.lineage import git_commit

    _, spec, platform = default_compiled
    ingest = _executors(platform)[_tasks(spec)["ingest"]["component"]["executorLabel"]]
    assert ingest["podMetadata"]["annotations"][LINEAGE_ANNOTATIONS[GIT_COMMIT_ENV]] == \
        git_commit()


def test_ingest_gets_bounded_scratch_space(compiled, tmp_path):
    """KFP v2 has no ephemeral-storage request (kubeflow/pipelines#11137): ingest's /tmp
    (DVC's cache and checkout, the TMDb crawl's cache) is an emptyDir with a size limit,
    so a crawl that outgrows it evicts ingest, not its neighbours on the node."""
    _, spec, executors = compiled
    tasks = _tasks(spec)
    for name, info in tasks.items():
        mounts = executors[info["component"]["executorLabel"]].get("emptyDirMounts", [])
        scratch = [m for m in mounts if m["volumeName"] == "scratch"]
        if name == "ingest":
            assert scratch == [{"volumeName": "scratch", "mountPath": "/tmp",
                                "sizeLimit": "40Gi"}]
        else:
            assert not scratch, name
    _, spec, platform = _compile(tmp_path / "p.yaml", ClusterSettings(**IMAGES,
                                                                      ingest_scratch=""))
    ingest = _executors(platform)[_tasks(spec)["ingest"]["component"]["executorLabel"]]
    assert "emptyDirMounts" not in ingest
    with pytest.raises(ValueError, match="ingest_scratch"):
        ClusterSettings(**IMAGES, ingest_scratch="lots")


def test_an_image_given_by_tag_is_pulled_on_every_run(tmp_path, compiled):
    """A node that holds `repo:tag` does not pull it again (imagePullPolicy defaults to
    IfNotPresent): tagged images get Always, so a tag pushed again is what runs; images
    pinned by digest (the golden file's) keep the node's default; image_pull_policy
    sets one for every task (e.g. IfNotPresent where nodes cannot reach the registry)."""
    _, _, executors = compiled
    assert not any("imagePullPolicy" in e for e in executors.values())
    tags = {"image": "r.example/postergenre:0.1.0", "gpu_image": "r.example/gpu:0.1.0"}
    _, spec, platform = _compile(tmp_path / "tags.yaml", ClusterSettings(**tags))
    labels = [info["component"]["executorLabel"] for info in _tasks(spec).values()]
    assert len(labels) == 10  # the nine stages and the ROC task
    assert {_executors(platform)[label]["imagePullPolicy"] for label in labels} == {"Always"}
    _, spec, platform = _compile(tmp_path / "mixed.yaml", ClusterSettings(
        image=IMAGES["image"], gpu_image=tags["gpu_image"]))
    policies = {name: _executors(platform)[info["component"]["executorLabel"]].get(
        "imagePullPolicy") for name, info in _tasks(spec).items()}
    assert policies.pop("train") == "Always"
    assert set(policies.values()) == {None}
    _, spec, platform = _compile(tmp_path / "ifnotpresent.yaml", ClusterSettings(
        **tags, image_pull_policy="IfNotPresent"))
    assert {e["imagePullPolicy"] for e in _executors(platform).values()} == {"IfNotPresent"}
    with pytest.raises(ValueError, match="image_pull_policy"):
        ClusterSettings(image_pull_policy="Sometimes")
