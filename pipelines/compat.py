"""Which Kubeflow Pipelines backend can run a compiled pipeline.

The kfp SDK (2.17.3 here) writes fields that older KFP backends do not know, and old
backends treat them three ways: the 2.2 / 2.3 driver rejects the task (strict JSON), the
2.4 / 2.5 driver drops them silently, and the 2.14+ API server refuses the run (strict
parse of the platform spec when it compiles the Argo workflow). So a pipeline is only
safe on a backend that knows every field it holds. `FIELDS_SINCE` lists, per proto field
the SDK can write, the first backend release that knows it (the kubernetes_platform and
pipeline_spec protos each backend release builds from: kubeflow/pipelines go.mod pins
kubernetes_platform 8b2a099e8c9f for 2.2.0 and d911c8b73b49 for 2.3.0 / 2.4.x, the API
protos 58ce09e07d03 for 2.2.0 / 2.3.0 and 873e9dedd766 for 2.4.x; from 2.5.0 on both
come from the tag itself). Fields absent from the table are known to 2.2.0.

`required_backend` reads a compiled package (both YAML documents) and returns the
oldest backend that can run it and why; `submit` / `upload` compare that with the
server's version (its healthz `tag_name`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# Kubeflow platform releases -> the KFP backend they ship (kubeflow/manifests README at
# each tag, "Kubeflow Pipelines | ... | <version>").
KUBEFLOW_RELEASES = {
    "1.9.0": "2.2.0", "1.9.1": "2.3.0", "1.10.0": "2.4.1", "1.10.1": "2.5.0",
    "1.10.2": "2.5.0", "1.11.0": "2.15.0", "26.03": "2.16.0",
}
# KFP backend releases from 2.2.0 on (kubeflow/pipelines tags without the sdk- prefix;
# there are none between 2.5.0 and 2.14.0). LATEST_BACKEND is what
# k8s/overlays/kfp-standalone installs.
BACKEND_RELEASES = ("2.2.0", "2.3.0", "2.4.0", "2.4.1", "2.5.0", "2.14.0", "2.14.3",
                    "2.14.4", "2.15.0", "2.16.0", "2.16.1", "2.17.0")
LATEST_BACKEND = "2.17.0"

# The pipeline's evaluate and gate take every trained model at once (dsl.Collected over
# the training ParallelFor): the backend collects a loop's artifacts from 2.14.0 on
# (kubeflow/pipelines ed828b513a, "enable dsl.Collected for parameters & artifacts").
COLLECTED_SINCE = "2.14.0"
OLDEST_SUPPORTED_BACKEND = COLLECTED_SINCE

FIELDS_SINCE: dict[str, str] = {
    # kfp_kubernetes.KubernetesExecutorConfig and its messages (the platform spec).
    **dict.fromkeys([
        "kfp_kubernetes.KubernetesExecutorConfig.emptyDirMounts",
        "kfp_kubernetes.KubernetesExecutorConfig.enabledSharedMemory",
        "kfp_kubernetes.EmptyDirMount.volumeName", "kfp_kubernetes.EmptyDirMount.mountPath",
        "kfp_kubernetes.EmptyDirMount.medium", "kfp_kubernetes.EmptyDirMount.sizeLimit",
        "kfp_kubernetes.EnabledSharedMemory.volumeName",
        "kfp_kubernetes.EnabledSharedMemory.size",
    ], "2.3.0"),
    **dict.fromkeys([
        "kfp_kubernetes.SecretAsEnv.secretNameParameter",
        "kfp_kubernetes.SecretAsVolume.secretNameParameter",
        "kfp_kubernetes.ConfigMapAsEnv.configMapNameParameter",
        "kfp_kubernetes.ConfigMapAsVolume.configMapNameParameter",
        "kfp_kubernetes.ImagePullSecret.secretNameParameter",
        "kfp_kubernetes.PvcMount.pvcNameParameter",
        "kfp_kubernetes.NodeSelector.nodeSelectorJson",
        "kfp_kubernetes.Toleration.tolerationJson",
    ], "2.5.0"),
    "kfp_kubernetes.NodeAffinityTerm.nodeAffinityJson": "2.14.0",
    "kfp_kubernetes.SecretAsEnv.optional": "2.15.0",
    "kfp_kubernetes.ConfigMapAsEnv.optional": "2.15.0",
    **dict.fromkeys([
        "kfp_kubernetes.KubernetesExecutorConfig.securityContext",
        "kfp_kubernetes.SecurityContext.runAsUser", "kfp_kubernetes.SecurityContext.runAsGroup",
        "kfp_kubernetes.SecurityContext.runAsNonRoot", "kfp_kubernetes.PvcMount.subPath",
    ], "2.16.0"),
    **dict.fromkeys([
        "kfp_kubernetes.CreatePvc.dataSource",
        "kfp_kubernetes.TypedLocalObjectReference.apiGroup",
        "kfp_kubernetes.TypedLocalObjectReference.kind",
        "kfp_kubernetes.TypedLocalObjectReference.name",
    ], "2.17.0"),
    # ml_pipelines (the pipeline spec, and the platform spec's envelope).
    **dict.fromkeys([
        "ml_pipelines.ComponentSpec.singlePlatformSpecs",
        "ml_pipelines.PipelineTaskSpec.CachingOptions.cacheKey",
        "ml_pipelines.SinglePlatformSpec.config",
        "ml_pipelines.SinglePlatformSpec.pipelineConfig",
        "ml_pipelines.SinglePlatformSpec.platform",
    ], "2.4.1"),
    **dict.fromkeys([
        "ml_pipelines.PipelineConfig.workspace", "ml_pipelines.WorkspaceConfig.size",
        "ml_pipelines.WorkspaceConfig.kubernetes",
        "ml_pipelines.KubernetesWorkspaceConfig.pvcSpecPatch",
    ], "2.14.0"),
    **dict.fromkeys([
        "ml_pipelines.ComponentSpec.taskConfigPassthroughs",
        "ml_pipelines.TaskConfigPassthrough.field",
        "ml_pipelines.TaskConfigPassthrough.applyToTask",
        "ml_pipelines.PipelineDeploymentConfig.ImporterSpec.downloadToWorkspace",
        "ml_pipelines.RuntimeArtifact.customPath",
    ], "2.15.0"),
    "ml_pipelines.ComponentInputsSpec.ParameterSpec.literals": "2.16.0",
    **dict.fromkeys([
        "ml_pipelines.PipelineConfig.activeDeadlineSeconds",
        "ml_pipelines.PipelineConfig.resourceTtlOnCompletion",
        "ml_pipelines.PipelineConfig.resourceTtlOnSuccess",
        "ml_pipelines.PipelineConfig.resourceTtlOnFailure",
    ], "2.17.0"),
}
# The string resources (`resourceCpuLimit: '2'`) and the accelerator's resourceType /
# resourceCount (2.4.1): the SDK writes their 2.2-era twins (cpuLimit: 2.0,
# accelerator.type / count) beside them, which older backends read instead; so they
# need no newer backend and are left out of FIELDS_SINCE.
_RESOURCES = "ml_pipelines.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec"
TWINNED_SINCE = dict.fromkeys([
    f"{_RESOURCES}.resourceCpuLimit", f"{_RESOURCES}.resourceCpuRequest",
    f"{_RESOURCES}.resourceMemoryLimit", f"{_RESOURCES}.resourceMemoryRequest",
    f"{_RESOURCES}.AcceleratorConfig.resourceType",
    f"{_RESOURCES}.AcceleratorConfig.resourceCount",
], "2.4.1")
# What a pipeline spec cannot carry (kfp_kubernetes.SecurityContext has runAsUser,
# runAsGroup and runAsNonRoot only; its privileged and capability fields were removed:
# kubernetes_platform/proto/kubernetes_executor_config.proto at 2.17.0) but the backend
# sets on every task's container itself from 2.16.0 on
# (backend/src/v2/compiler/argocompiler/security_context.go,
# applyUserContainerSecurityContext; absent at 2.14.0 and 2.15.0). No backend sets or
# carries readOnlyRootFilesystem.
HARDENING_SINCE = "2.16.0"
HARDENING = ("allowPrivilegeEscalation: false", "capabilities.drop: [ALL]",
             "seccompProfile: RuntimeDefault")
# Proto fields the installed SDK knows but no backend release does yet.
UNRELEASED = "unreleased"

# google.protobuf types written as plain JSON (no fields of their own to check).
_OPAQUE = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue",
           "google.protobuf.Duration", "google.protobuf.Timestamp", "google.protobuf.Any",
           "google.rpc.Status"}


def version_key(version: str) -> tuple[int, ...]:
    """'2.15.0' -> (2, 15, 0); a tag such as 'v2.15.0' or '2.15.0-rc.1' too."""
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", str(version).strip())
    if not match:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(part or 0) for part in match.groups())


def newest(versions: Iterable[str]) -> str:
    return max(versions, key=version_key)


def kubeflow_releases_for(backend: str) -> list[str]:
    """The Kubeflow platform releases whose KFP backend is `backend` or newer."""
    return [kf for kf, kfp in KUBEFLOW_RELEASES.items()
            if version_key(kfp) >= version_key(backend)]


def _descriptors():
    from kfp.kubernetes import kubernetes_executor_config_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2

    return (pipeline_spec_pb2.PipelineSpec.DESCRIPTOR,
            pipeline_spec_pb2.PipelineDeploymentConfig.DESCRIPTOR,
            pipeline_spec_pb2.PlatformSpec.DESCRIPTOR,
            kubernetes_executor_config_pb2.KubernetesExecutorConfig.DESCRIPTOR)


def _walk(value, descriptor, path: str, out: dict[str, str]) -> None:
    """Record `message.field -> JSON path` for every field present in `value`."""
    if not isinstance(value, Mapping):
        return
    by_json = {f.json_name: f for f in descriptor.fields}
    by_name = {f.name: f for f in descriptor.fields}
    for key, inner in value.items():
        field = by_json.get(key) or by_name.get(key)
        name = f"{descriptor.full_name}.{field.json_name if field else key}"
        out.setdefault(name if field else f"?{name}", f"{path}.{key}")
        if field is None or field.message_type is None:
            continue
        sub = field.message_type
        if sub.full_name in _OPAQUE:
            continue
        if sub.GetOptions().map_entry:
            value_field = sub.fields_by_name["value"]
            if value_field.message_type is not None and \
                    value_field.message_type.full_name not in _OPAQUE:
                for map_key, item in (inner or {}).items():
                    _walk(item, value_field.message_type, f"{path}.{key}[{map_key}]", out)
            continue
        for item in (inner if isinstance(inner, list) else [inner]):
            _walk(item, sub, f"{path}.{key}", out)


def fields_used(spec: Mapping, platform: Mapping | None = None) -> dict[str, str]:
    """Every proto field a compiled pipeline holds (`package.Message.field` -> where),
    the Struct-typed parts the backend parses (deploymentSpec, the Kubernetes executor
    configs) included. A name starting with `?` is a field the installed SDK does not
    know."""
    pipeline_d, deployment_d, platform_d, k8s_d = _descriptors()
    out: dict[str, str] = {}
    _walk(spec, pipeline_d, "spec", out)
    _walk(spec.get("deploymentSpec") or {}, deployment_d, "spec.deploymentSpec", out)
    if platform:
        _walk(platform, platform_d, "platform", out)
        for name, platform_spec in (platform.get("platforms") or {}).items():
            if name != "kubernetes":
                continue
            executors = (platform_spec.get("deploymentSpec") or {}).get("executors") or {}
            for label, config in executors.items():
                _walk(config, k8s_d, f"platform.kubernetes.{label}", out)
    return out


def _uses_collected(spec: Mapping) -> bool:
    for component in (spec.get("components") or {}).values():
        artifacts = (component.get("inputDefinitions") or {}).get("artifacts") or {}
        if any(a.get("isArtifactList") for a in artifacts.values()):
            return True
    return False


def required_backend(spec: Mapping, platform: Mapping | None = None
                     ) -> tuple[str, dict[str, str]]:
    """(the oldest KFP backend that runs this compiled pipeline, {what: since} for each
    reason that needs more than 2.2.0)."""
    reasons: dict[str, str] = {}
    for field in fields_used(spec, platform):
        if field.startswith("?"):
            reasons[field[1:]] = UNRELEASED
        elif field in FIELDS_SINCE:
            reasons[field] = FIELDS_SINCE[field]
    if _uses_collected(spec):
        reasons["dsl.Collected (a loop's artifacts as one input list)"] = COLLECTED_SINCE
    if any(v == UNRELEASED for v in reasons.values()):
        return UNRELEASED, reasons
    return (newest(reasons.values()) if reasons else BACKEND_RELEASES[0]), reasons


def missing_on(server_version: str, spec: Mapping, platform: Mapping | None = None
               ) -> list[str]:
    """What the compiled pipeline uses that a backend of `server_version` lacks, one
    'Message.field (since X)' per outermost field (not its sub-fields as well), newest
    first; empty when that backend can run it."""
    have = version_key(server_version)

    def lacks(since: str) -> bool:
        return since == UNRELEASED or version_key(since) > have

    used = fields_used(spec, platform)
    lacking: dict[str, tuple[str, str]] = {}  # JSON path -> (since, field)
    for field, path in used.items():
        name = field.lstrip("?")
        since = UNRELEASED if field.startswith("?") else FIELDS_SINCE.get(name)
        if since and lacks(since):
            lacking[path] = (since, name.split(".", 1)[1])
    outer = {path: v for path, v in lacking.items()
             if not any(path.startswith(other + ".") for other in lacking)}
    items = sorted(outer.values(), key=lambda p: (
        (10**6,) if p[0] == UNRELEASED else version_key(p[0])), reverse=True)
    out = [f"{what} (since {since})" for since, what in dict.fromkeys(items)]
    if _uses_collected(spec) and lacks(COLLECTED_SINCE):
        out.append(f"dsl.Collected, a loop's artifacts as one input (since {COLLECTED_SINCE})")
    return out
