"""Cluster settings of the pipeline: images, GPU node pool, resources, secrets, caching.

Everything here is a compile-time setting: it lands in the compiled YAML (the image
references, resource requests, node selectors, tolerations, the *names* of Secrets) and
never a secret value. `apply_cluster_settings` is called once at the end of the pipeline
body and configures every task created so far, so a stage added later gets the CPU
defaults without touching this module. kfp.local ignores all of it (as it documents),
so the local run is unaffected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kfp import dsl, kubernetes
from kfp.dsl import pipeline_context

from postergenre.components import DEFAULT_GPU_IMAGE, DEFAULT_IMAGE, GPU_STAGES

GPU_RESOURCE = "nvidia.com/gpu"
# The image's user (docker/Dockerfile.*): tasks run as it, never as root; above 10000 so
# it matches no user on the node.
RUN_AS_USER = 10001
# NVIDIA's GPU feature discovery (GPU operator) puts this label on every GPU node, on any
# cloud; GKE and EKS node-pool labels are in README "Run on Kubeflow".
DEFAULT_GPU_NODE_LABEL = ("nvidia.com/gpu.present", "true")

# Secret names and keys (k8s/base/secrets.yaml holds the templates): key -> env variable.
TMDB_SECRET_KEYS = {"api-key": "TMDB_API_KEY", "read-access-token": "TMDB_READ_ACCESS_TOKEN"}
S3_SECRET_KEYS = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
                  "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
# The endpoint of an S3-compatible store (MinIO, Ceph, ...) is not a secret: it comes from
# an optional ConfigMap, so AWS S3 itself needs none.
S3_CONFIG_KEYS = {"AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL"}
# Tasks that read or write S3: the DVC remote (ingest), the model registry (evaluate reads
# the last blessed model, register writes), s3:// pretrained weights (train).
S3_TASKS = ("ingest", "train", "evaluate", "register")
TMDB_TASKS = ("ingest",)
# Ingest from TMDb reads a changing outside world that no parameter describes: never cached
# unless asked for (`cache_ingest`, for data pinned by `data_version`).
UNCACHED_BY_DEFAULT = ("ingest",)

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
    `s3_config_map` are Kubernetes object names ("" turns that injection off);
    `pipeline_root` is where KFP writes artifacts (s3://..., None: the cluster default).
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

    def __post_init__(self) -> None:
        if self.gpu_count < 1:
            raise ValueError(f"gpu_count: {self.gpu_count} (the training tasks need >= 1 GPU)")
        if self.node_selector is not None and (len(self.node_selector) != 2
                                               or not all(self.node_selector)):
            raise ValueError(f"node_selector: {self.node_selector!r}, expected (key, value)")
        if not _QUANTITY.match(self.shm_size):
            raise ValueError(f"shm_size: {self.shm_size!r} is not a Kubernetes quantity")
        if self.pipeline_root is not None and "://" not in self.pipeline_root:
            raise ValueError(f"pipeline_root: {self.pipeline_root!r}, expected a URI such as "
                             "s3://bucket/pipeline-root")


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


def apply_cluster_settings(settings: ClusterSettings) -> None:
    """Configure every task of the pipeline being defined (call it last in its body)."""
    pipeline = pipeline_context.Pipeline.get_default_pipeline()
    if pipeline is None:
        raise RuntimeError("apply_cluster_settings must be called inside a pipeline body")
    for task in pipeline.tasks.values():
        stage = _component_name(task)
        if stage in GPU_STAGES:
            apply_gpu_node_pool(task, settings)
        else:
            settings.cpu_resources.apply(task)
        kubernetes.set_security_context(task, run_as_user=RUN_AS_USER,
                                        run_as_group=RUN_AS_USER, run_as_non_root=True)
        if stage in TMDB_TASKS and settings.tmdb_secret:
            # Optional: the demo and DVC sources need no TMDb key, and a missing key is
            # reported by ingest itself, naming the variable.
            kubernetes.use_secret_as_env(task, settings.tmdb_secret, TMDB_SECRET_KEYS,
                                         optional=True)
        if stage in S3_TASKS and settings.s3_secret:
            kubernetes.use_secret_as_env(task, settings.s3_secret, S3_SECRET_KEYS)
        if stage in S3_TASKS and settings.s3_config_map:
            kubernetes.use_config_map_as_env(task, settings.s3_config_map, S3_CONFIG_KEYS,
                                             optional=True)
        cached = settings.caching and (stage not in UNCACHED_BY_DEFAULT
                                       or settings.cache_ingest)
        task.set_caching_options(cached)
