"""Cluster settings of the pipeline: images, GPU node pool, resources, secrets, caching,
retries.

Everything here is a compile-time setting: it lands in the compiled YAML (the image
references, resource requests, node selectors, tolerations, the *names* of Secrets) and
never a secret value. `apply_cluster_settings` is called once at the end of the pipeline
body and configures every task created so far, so a stage added later gets the CPU
defaults without touching this module. kfp.local ignores all of it (as it documents),
so the local run is unaffected.

What only newer KFP backends understand is opt-in (`BACKEND_FEATURES`): by default the
compiled pipeline runs on the oldest backend the project supports (compat.py,
OLDEST_SUPPORTED_BACKEND), and `ClusterSettings.min_backend_version()` says what the
chosen settings need.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kfp import dsl, kubernetes
from kfp.dsl import pipeline_context
from kfp.dsl.structures import convert_duration_to_seconds

from postergenre.components import DEFAULT_GPU_IMAGE, DEFAULT_IMAGE, GPU_STAGES
from postergenre.data.storage import PROJECT_ENV_PREFIX
from postergenre.lineage import GIT_COMMIT_ENV, IMAGE_ENV
from postergenre.pipelines.compat import (
    OLDEST_SUPPORTED_BACKEND,
    kubeflow_releases_for,
    newest,
    version_key,
)

GPU_RESOURCE = "nvidia.com/gpu"
# Where components.DEFAULT_IMAGE / DEFAULT_GPU_IMAGE point: placeholders nothing publishes.
PLACEHOLDER_IMAGE_PREFIX = DEFAULT_IMAGE.rsplit("/", 1)[0] + "/"
# The image's user (docker/Dockerfile.*): tasks run as it, never as root; above 10000 so
# it matches no user on the node.
RUN_AS_USER = 10001
# NVIDIA's GPU feature discovery (GPU operator) puts this label on every GPU node, on any
# cloud. GKE labels its GPU nodes cloud.google.com/gke-accelerator=<accelerator type>,
# EKS every node eks.amazonaws.com/nodegroup=<node group>: NODE_SELECTOR_SHORTCUTS.
DEFAULT_GPU_NODE_LABEL = ("nvidia.com/gpu.present", "true")
NODE_SELECTOR_SHORTCUTS = {
    "nvidia": ("nvidia.com/gpu.present", "true"),
    # The values of k8s/overlays/gpu-node-pool's examples; `gke:TYPE` / `eks:GROUP` for yours.
    "gke": ("cloud.google.com/gke-accelerator", "nvidia-l4"),
    "eks": ("eks.amazonaws.com/nodegroup", "gpu"),
}

# Secret names and keys (k8s/secrets holds the templates): key -> env variable. The S3
# variables carry the project's prefix: the KFP launcher runs in the same container and
# reads AWS_* for the pipeline root's artifact store, so the tasks' own S3 credentials
# must not reach it under those names; postergenre.data.storage maps them back to AWS_* inside
# the task's Python process only (use_project_credentials).
TMDB_SECRET_KEYS = {"api-key": "TMDB_API_KEY", "read-access-token": "TMDB_READ_ACCESS_TOKEN"}
S3_SECRET_KEYS = {"AWS_ACCESS_KEY_ID": f"{PROJECT_ENV_PREFIX}AWS_ACCESS_KEY_ID",
                  "AWS_SECRET_ACCESS_KEY": f"{PROJECT_ENV_PREFIX}AWS_SECRET_ACCESS_KEY"}
# The endpoint of an S3-compatible store (MinIO, Ceph, ...) is not a secret: it comes from
# a ConfigMap, empty for AWS S3 itself.
S3_CONFIG_KEYS = {"AWS_ENDPOINT_URL": f"{PROJECT_ENV_PREFIX}AWS_ENDPOINT_URL"}
# Tasks that read or write S3: the DVC remote (ingest), the model registry (evaluate reads
# the last blessed model, register writes), s3:// pretrained weights (train).
S3_TASKS = ("ingest", "train", "evaluate", "register")
TMDB_TASKS = ("ingest",)
# Ingest from TMDb reads a changing outside world that no parameter describes: never cached
# unless asked for (`cache_ingest`, for data pinned by `data_version`).
UNCACHED_BY_DEFAULT = ("ingest",)
# Evaluate reads the registry's last blessed model and register writes the registry: state
# that no parameter or input artifact describes, so a cached result would be stale.
NEVER_CACHED = ("evaluate", "register")
# Lineage (postergenre.lineage): the image and git commit reach every task as pod
# annotations, read back as environment variables through the Downward API. Annotations
# are not part of KFP's cache key (a pipeline spec env variable is, on KFP 2.15+), so a
# new commit alone does not rerun cached steps.
LINEAGE_ANNOTATIONS = {IMAGE_ENV: "postergenre.io/image",
                       GIT_COMMIT_ENV: "postergenre.io/git-commit"}
# Ingest writes the whole data set (a full TMDb crawl is ~10 GB; a DVC pull holds DVC's
# cache and its checkout at once) to the container's disk. KFP v2 cannot ask for
# ephemeral-storage (its ResourceSpec has CPU, memory and accelerators only:
# kubeflow/pipelines#11137), so ingest's temporary files go to an emptyDir at /tmp whose
# sizeLimit bounds them: past it the kubelet evicts ingest alone, never its neighbours.
SCRATCH_STAGES = ("ingest",)
SCRATCH_MOUNT = "/tmp"


@dataclass(frozen=True)
class BackendFeature:
    """An opt-in setting that only newer KFP backends understand."""

    since: str  # the first KFP backend release that knows it
    flag: str  # the `pipeline compile` flag that turns it on
    what: str


# Older backends reject these fields (2.14 / 2.15 refuse the run, the 2.2 / 2.3 driver
# fails every task) or drop them silently (2.4 / 2.5): compat.FIELDS_SINCE has the
# evidence field by field.
BACKEND_FEATURES = {
    "security_context": BackendFeature(
        "2.16.0", "--security-context", "runAsUser/runAsGroup/runAsNonRoot on every task"),
    "optional_secrets": BackendFeature(
        "2.15.0", "--optional-secrets", "Secrets and ConfigMaps that may be missing"),
}

_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")


@dataclass(frozen=True)
class Resources:
    """CPU and memory requests and limits of one task (Kubernetes quantities)."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str

    def __post_init__(self) -> None:
        for name in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
            value = getattr(self, name)
            if not _QUANTITY.match(str(value)):
                raise ValueError(f"{name}: {value!r} is not a Kubernetes quantity "
                                 "(e.g. '500m', '2', '4G', '8Gi')")

    def apply(self, task: dsl.PipelineTask) -> None:
        task.set_cpu_request(self.cpu_request).set_cpu_limit(self.cpu_limit)
        task.set_memory_request(self.memory_request).set_memory_limit(self.memory_limit)


@dataclass(frozen=True)
class ClusterSettings:
    """Every compile-time setting of the pipeline on a cluster (defaults: a sane GPU pool).

    `node_selector` is (label key, label value) or None; `tmdb_secret` / `s3_secret` /
    `s3_config_map` are Kubernetes object names ("" turns that injection off: an
    `s3_secret` of "" is the setting for IRSA / Workload Identity, where the pod's
    service account gets S3 access); `pipeline_root` is where KFP writes artifacts
    (s3://..., None: the cluster default); `model_registry` becomes the default of the
    run parameter `registry` (an s3:// URI; None keeps the local folder `registry`,
    which `submit` refuses). `require_gpu` makes every training task fail at once when it
    sees no GPU (it overrides params.yaml's models.*.require_gpu in the compiled
    defaults). Every task retries `retries` times, waiting `retry_backoff`, then
    `retry_backoff_factor` times longer each time, for at most `retry_backoff_max`.

    Opt-in, for newer KFP backends only (BACKEND_FEATURES): `security_context`,
    `optional_secrets` (the three Secrets/ConfigMaps may be missing; without it they
    must exist, even if empty).

    Lineage: every task records its image and `git_commit` (None: the commit of the
    checkout that compiles, `git rev-parse HEAD`, `-dirty` if edited; "" for none) in
    its artifacts' metadata. `ingest_scratch` bounds ingest's /tmp ("" leaves /tmp on
    the container's disk, unbounded).
    """

    image: str = DEFAULT_IMAGE
    gpu_image: str = DEFAULT_GPU_IMAGE
    gpu_type: str = GPU_RESOURCE
    gpu_count: int = 1
    node_selector: tuple[str, str] | None = DEFAULT_GPU_NODE_LABEL
    gpu_toleration: bool = True
    shm_size: str = "8Gi"
    cpu_resources: Resources = field(default_factory=lambda: Resources("1", "2", "4G", "8G"))
    gpu_resources: Resources = field(default_factory=lambda: Resources("4", "8", "16G", "32G"))
    tmdb_secret: str = "postergenre-tmdb"
    s3_secret: str = "postergenre-s3"
    s3_config_map: str = "postergenre-s3"
    pipeline_root: str | None = None
    caching: bool = True
    cache_ingest: bool = False
    model_registry: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    require_gpu: bool = True
    retries: int = 2
    retry_backoff: str = "60s"
    retry_backoff_factor: float = 2.0
    retry_backoff_max: str = "12h"
    security_context: bool = False
    optional_secrets: bool = False
    git_commit: str | None = None
    ingest_scratch: str = "40Gi"

    def __post_init__(self) -> None:
        if self.gpu_count < 1:
            raise ValueError(f"gpu_count: {self.gpu_count} (the training tasks need >= 1 GPU)")
        if self.node_selector is not None and (len(self.node_selector) != 2
                                               or not all(self.node_selector)):
            raise ValueError(f"node_selector: {self.node_selector!r}, expected (key, value)")
        if not _QUANTITY.match(self.shm_size):
            raise ValueError(f"shm_size: {self.shm_size!r} is not a Kubernetes quantity")
        if self.ingest_scratch and not _QUANTITY.match(self.ingest_scratch):
            raise ValueError(f"ingest_scratch: {self.ingest_scratch!r} is not a Kubernetes "
                             "quantity (e.g. '40Gi'; '' for none)")
        if self.pipeline_root is not None and "://" not in self.pipeline_root:
            raise ValueError(f"pipeline_root: {self.pipeline_root!r}, expected a URI such as "
                             "s3://bucket/pipeline-root")
        if self.model_registry is not None and not is_remote_uri(self.model_registry):
            raise ValueError(f"model_registry: {self.model_registry!r}, expected a URI such "
                             "as s3://bucket/postergenre/registry (a folder in a task's pod "
                             "is gone when the pod ends)")
        object.__setattr__(self, "image_pull_secrets", tuple(self.image_pull_secrets))
        if not all(self.image_pull_secrets):
            raise ValueError(f"image_pull_secrets: {self.image_pull_secrets!r}, expected "
                             "Secret names")
        if self.retries < 0:
            raise ValueError(f"retries: {self.retries} (0 for none)")
        if int(self.retry_backoff_factor) != self.retry_backoff_factor \
                or self.retry_backoff_factor < 1:
            # KFP 2.14's Argo compiler casts the factor to an integer.
            raise ValueError(f"retry_backoff_factor: {self.retry_backoff_factor}, expected a "
                             "whole number >= 1")
        for name in ("retry_backoff", "retry_backoff_max"):
            try:
                convert_duration_to_seconds(getattr(self, name))
            except (ValueError, IndexError, AttributeError):
                raise ValueError(f"{name}: {getattr(self, name)!r}, expected a duration "
                                 "such as '60s', '10m' or '12h'") from None

    def features(self) -> list[str]:
        """The opt-in backend features these settings use (BACKEND_FEATURES' names)."""
        return [name for name in BACKEND_FEATURES if getattr(self, name)]

    def min_backend_version(self) -> str:
        """The oldest KFP backend that runs the pipeline compiled with these settings."""
        return newest([OLDEST_SUPPORTED_BACKEND,
                       *(BACKEND_FEATURES[name].since for name in self.features())])

    def backend_note(self) -> str:
        """One line for the pipeline's description and `compile`'s output."""
        version = self.min_backend_version()
        kubeflow = kubeflow_releases_for(version)
        where = f" (Kubeflow {', '.join(kubeflow)})" if kubeflow else ""
        return f"Needs Kubeflow Pipelines backend {version} or newer{where}."

    def warnings(self) -> list[str]:
        """What compiles but cannot run on a cluster as it stands (`submit` and `upload`
        refuse it; `compile` only warns)."""
        out = []
        placeholders = [name for name, image, default in (
            ("--image", self.image, DEFAULT_IMAGE), ("--gpu-image", self.gpu_image,
                                                     DEFAULT_GPU_IMAGE)) if image == default]
        if placeholders:
            out.append(f"{' and '.join(placeholders)}: the placeholder images "
                       f"{PLACEHOLDER_IMAGE_PREFIX}... are published by nothing; build and "
                       "push yours (make images) and pass --registry REGISTRY [--tag TAG] "
                       "or --image / --gpu-image")
        if self.model_registry is None:
            out.append("the run parameter `registry` defaults to a folder inside the task's "
                       "pod, lost when it ends: compile with --model-registry s3://... or "
                       "pass -p registry=s3://... to submit")
        return out

    @staticmethod
    def features_for(version: str) -> dict[str, bool]:
        """Every opt-in feature, on where the KFP backend `version` knows it."""
        have = version_key(version)
        return {name: version_key(f.since) <= have for name, f in BACKEND_FEATURES.items()}


def is_remote_uri(location: str) -> bool:
    """s3://, gs://, ... but not a local path or file://."""
    return "://" in location and not location.startswith("file://")


def apply_gpu_node_pool(task: dsl.PipelineTask, settings: ClusterSettings) -> None:
    """Put a training task on the GPU node pool: accelerator limit, node selector,
    a toleration for the GPU taint, /dev/shm in memory, and the GPU pod's resources."""
    task.set_accelerator_type(settings.gpu_type).set_accelerator_limit(settings.gpu_count)
    if settings.node_selector is not None:
        kubernetes.add_node_selector(task, *settings.node_selector)
    if settings.gpu_toleration:
        # GPU node pools (GKE, EKS, the GPU operator) taint their nodes so that only pods
        # that tolerate it land there; Exists matches whatever value the pool sets.
        kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists",
                                  effect="NoSchedule")
    # The container runtime's default /dev/shm is 64 MiB: too small for TensorFlow's
    # data pipeline and NCCL. A memory emptyDir counts against the memory limit.
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm",
                               medium="Memory", size_limit=settings.shm_size)
    settings.gpu_resources.apply(task)


def _component_name(task: dsl.PipelineTask) -> str:
    """The stage a task runs (`train_scratch`), whatever the task's display name."""
    return task.component_spec.name.replace("-", "_")


def _drop_unset_optional(task: dsl.PipelineTask) -> None:
    """kfp-kubernetes writes `optional: false` on every Secret / ConfigMap it injects;
    backends before 2.15 do not know the field (2.14 refuses the run). Absent means the
    same (the object must exist), so drop it."""
    config = task.platform_config.get("kubernetes", {})
    for key in ("secretAsEnv", "configMapAsEnv"):
        for item in config.get(key, []):
            if item.get("optional") is False:
                del item["optional"]


def apply_lineage(task: dsl.PipelineTask, image: str, commit: str) -> None:
    """Hand a task the image it runs in and the compiling commit (postergenre.lineage):
    pod annotations, which the Downward API turns into environment variables."""
    for env, value in ((IMAGE_ENV, image), (GIT_COMMIT_ENV, commit)):
        annotation = LINEAGE_ANNOTATIONS[env]
        kubernetes.add_pod_annotation(task, annotation, value)
        kubernetes.use_field_path_as_env(task, env, f"metadata.annotations['{annotation}']")


def apply_cluster_settings(settings: ClusterSettings) -> None:
    """Configure every task of the pipeline being defined (call it last in its body)."""
    pipeline = pipeline_context.Pipeline.get_default_pipeline()
    if pipeline is None:
        raise RuntimeError("apply_cluster_settings must be called inside a pipeline body")
    optional = settings.optional_secrets
    commit = settings.git_commit
    if commit is None:
        from postergenre.lineage import git_commit

        commit = git_commit()
    for task in pipeline.tasks.values():
        stage = _component_name(task)
        if stage in GPU_STAGES:
            apply_gpu_node_pool(task, settings)
        else:
            settings.cpu_resources.apply(task)
        apply_lineage(task, task.container_spec.image, commit)
        if stage in SCRATCH_STAGES and settings.ingest_scratch:
            # emptyDirs are world-writable, so the image's non-root user can write there.
            kubernetes.empty_dir_mount(task, volume_name="scratch", mount_path=SCRATCH_MOUNT,
                                       size_limit=settings.ingest_scratch)
        if settings.security_context:
            # Without it the task runs as the image's USER (10001, docker/Dockerfile.*).
            kubernetes.set_security_context(task, run_as_user=RUN_AS_USER,
                                            run_as_group=RUN_AS_USER, run_as_non_root=True)
        if settings.image_pull_secrets:
            kubernetes.set_image_pull_secrets(task, list(settings.image_pull_secrets))
        if stage in TMDB_TASKS and settings.tmdb_secret:
            # The demo and DVC sources need no TMDb key, and a missing key is reported by
            # ingest itself, naming the variable.
            kubernetes.use_secret_as_env(task, settings.tmdb_secret, TMDB_SECRET_KEYS,
                                         optional=optional)
        if stage in S3_TASKS and settings.s3_secret:
            kubernetes.use_secret_as_env(task, settings.s3_secret, S3_SECRET_KEYS,
                                         optional=optional)
        if stage in S3_TASKS and settings.s3_config_map:
            kubernetes.use_config_map_as_env(task, settings.s3_config_map, S3_CONFIG_KEYS,
                                             optional=optional)
        _drop_unset_optional(task)
        cached = settings.caching and stage not in NEVER_CACHED and (
            stage not in UNCACHED_BY_DEFAULT or settings.cache_ingest)
        task.set_caching_options(cached)
        if settings.retries:
            # Preempted nodes, a flaky API or S3: every task is safe to run again (each
            # writes only its own outputs; register writes an entry named by its bytes).
            task.set_retry(num_retries=settings.retries, backoff_duration=settings.retry_backoff,
                           backoff_factor=settings.retry_backoff_factor,
                           backoff_max_duration=settings.retry_backoff_max)
