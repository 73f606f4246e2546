"""Cluster settings of the pipeline: images, GPU node pool, resources, secrets, caching,
retries; and each stage's profile (which image, pool, secrets and cache policy it gets).

Everything here is a compile-time setting: it lands in the compiled YAML (the image
references, resource requests, node selectors, tolerations, the *names* of Secrets) and
never a secret value. The settings are one typed dataclass whose fields are declared once
with `typed_config.setting` (default and help); `add_cluster_flags` makes the flags of
`pipeline compile` / `submit` / `upload` from them and `settings_from_args` reads them
back through `typed_config.from_mapping`, as the stages' settings are. `STAGE_PROFILES`
says, per stage, what it gets; `apply_cluster_settings` is called once at the end of the
pipeline body and configures every task from its stage's profile. kfp.local ignores all
of it (as it documents), so the local run is unaffected.

What only newer KFP backends understand is opt-in (`BACKEND_FEATURES`): by default the
compiled pipeline runs on the oldest backend the project supports (compat.py,
OLDEST_SUPPORTED_BACKEND), and `ClusterSettings.min_backend_version()` says what the
chosen settings need. This module imports kfp only where it configures tasks, so the
command line builds its flags without it.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from postergenre.data.storage import PROJECT_ENV_PREFIX
from postergenre.lineage import GIT_COMMIT_ENV, IMAGE_ENV
from postergenre.pipelines.compat import (
    OLDEST_SUPPORTED_BACKEND,
    kubeflow_releases_for,
    newest,
    version_key,
)
from postergenre.typed_config import from_mapping, setting

if TYPE_CHECKING:
    from kfp import dsl

GPU_RESOURCE = "nvidia.com/gpu"
# The images' names in a registry (`make images`; `registry` and `tag` below), and the
# placeholders used when no registry is given: published by nothing, so `submit` refuses
# them.
IMAGE_NAMES = {"cpu": "postergenre", "gpu": "postergenre-gpu"}
PLACEHOLDER_IMAGE_PREFIX = "ghcr.io/postergenre/"
DEFAULT_IMAGE = f"{PLACEHOLDER_IMAGE_PREFIX}{IMAGE_NAMES['cpu']}:0.1.0"
DEFAULT_GPU_IMAGE = f"{PLACEHOLDER_IMAGE_PREFIX}{IMAGE_NAMES['gpu']}:0.1.0"
# The image's user (docker/Dockerfile.*): tasks run as it, never as root; above 10000 so
# it matches no user on the node.
RUN_AS_USER = 10001
# NVIDIA's GPU feature discovery (GPU operator) puts this label on every GPU node, on any
# cloud. GKE labels its GPU nodes cloud.google.com/gke-accelerator=<accelerator type>,
# EKS every node eks.amazonaws.com/nodegroup=<node group>: NODE_SELECTOR_SHORTCUTS.
DEFAULT_GPU_NODE_LABEL = ("nvidia.com/gpu.present", "true")
NODE_SELECTOR_SHORTCUTS = {
    "nvidia": DEFAULT_GPU_NODE_LABEL,
    # The values of the GKE and EKS examples (k8s/gpu-node-pool); `gke:TYPE` / `eks:GROUP`
    # for yours.
    "gke": ("cloud.google.com/gke-accelerator", "nvidia-l4"),
    "eks": ("eks.amazonaws.com/nodegroup", "gpu"),
}
# What a model registry on a cluster must be (is_registry_uri). The images hold s3fs and no
# other remote filesystem (no gcsfs), so a gs:// registry would fail in evaluate and
# register; GCS is reached through its S3-compatible XML API with HMAC keys instead.
REGISTRY_URI_HINT = ("expected an s3:// URI such as s3://bucket/postergenre/registry (a "
                     "folder in a task's pod is gone when the pod ends; the images reach S3 "
                     "and S3-compatible stores only, GCS through its XML API with HMAC keys)")
# Kubernetes' image pull policies (`image_pull_policy`).
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
# Where the GPU image keeps docker/check_cuda.py (docker/Dockerfile.gpu), which the GPU
# check Job runs with --gpu.
GPU_CHECK_SCRIPT = "/opt/postergenre/check_cuda.py"
# `git_commit`'s value that stands for the compiling checkout's commit.
COMPILING_CHECKOUT = "HEAD"

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
# Lineage (postergenre.lineage): the image and git commit reach every task as pod
# annotations, read back as environment variables through the Downward API. Annotations
# are not part of KFP's cache key (a pipeline spec env variable is, on KFP 2.15+), so a
# new commit alone does not rerun cached steps.
LINEAGE_ANNOTATIONS = {IMAGE_ENV: "postergenre.io/image",
                       GIT_COMMIT_ENV: "postergenre.io/git-commit"}
SCRATCH_MOUNT = "/tmp"

# ---- stage profiles ---------------------------------------------------------------------

# What a stage may get: the TMDb keys, or the S3 keys (with the endpoint ConfigMap).
SECRET_KINDS = ("tmdb", "s3")
# Cache policies: reuse a cached result; never (the task reads or writes state that no
# input describes); only when asked (`cache_ingest`).
CACHED, NEVER_CACHED, CACHED_IF_ASKED = "cached", "never", "if-asked"


@dataclass(frozen=True)
class StageProfile:
    """How one stage runs on the cluster: `gpu` (the GPU image on the GPU node pool:
    accelerator, node selector, toleration, /dev/shm and the GPU task's resources; else
    the CPU image and the CPU task's resources), the `secrets` it gets (SECRET_KINDS),
    its `cache` policy, and `scratch` (its /tmp on an emptyDir bounded by
    `ingest_scratch`)."""

    gpu: bool = False
    secrets: tuple[str, ...] = ()
    cache: str = CACHED
    scratch: bool = False

    def __post_init__(self) -> None:
        unknown = [s for s in self.secrets if s not in SECRET_KINDS]
        if unknown:
            raise ValueError(f"secrets: {unknown[0]!r} is not one of {', '.join(SECRET_KINDS)}")
        if self.cache not in (CACHED, NEVER_CACHED, CACHED_IF_ASKED):
            raise ValueError(f"cache: {self.cache!r}")


# Every stage of components.STAGES, and what it gets. The rest follows from this table:
# the image each component is built in, the GPU pool, the Secrets, the cache policy.
STAGE_PROFILES = {
    # Reads the DVC remote, or a TMDb crawl: a changing outside world that no parameter
    # describes, so never cached unless asked for (`cache_ingest`, for data pinned by
    # `data_version`). Writes the whole data set to /tmp (a full crawl is ~10 GB; a DVC pull
    # holds DVC's cache and its checkout at once): KFP v2 cannot ask for ephemeral-storage
    # (its ResourceSpec has CPU, memory and accelerators only: kubeflow/pipelines#11137),
    # so /tmp is an emptyDir whose sizeLimit bounds it: past it the kubelet evicts ingest
    # alone, never its neighbours.
    "ingest": StageProfile(secrets=("tmdb", "s3"), cache=CACHED_IF_ASKED, scratch=True),
    "validate": StageProfile(),
    "split": StageProfile(),
    "augment": StageProfile(),
    # s3:// pretrained weights.
    "train": StageProfile(gpu=True, secrets=("s3",)),
    # Reads the registry's last blessed model: state that no input describes.
    "evaluate": StageProfile(secrets=("s3",), cache=NEVER_CACHED),
    # One model's ROC, from evaluate's output (one task per model).
    "roc": StageProfile(),
    "gate": StageProfile(),
    # Writes the registry.
    "register": StageProfile(secrets=("s3",), cache=NEVER_CACHED),
    "batch_predict": StageProfile(),
}


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

    @classmethod
    def from_pairs(cls, cpu: str, memory: str) -> Resources:
        """From two `REQUEST[:LIMIT]` settings (one value: the limit is the request)."""
        return cls(*_pair("cpu", cpu), *_pair("memory", memory))

    def apply(self, task: dsl.PipelineTask) -> None:
        task.set_cpu_request(self.cpu_request).set_cpu_limit(self.cpu_limit)
        task.set_memory_request(self.memory_request).set_memory_limit(self.memory_limit)


def _pair(name: str, value: str) -> tuple[str, str]:
    request, _, limit = value.partition(":")
    if not request:
        raise ValueError(f"{name}: expected REQUEST[:LIMIT], got {value!r}")
    return request, limit or request


def node_label(value: str) -> tuple[str, str] | None:
    """A node selector setting -> (label key, value), or None for 'none': KEY=VALUE or a
    shortcut, nvidia, gke[:ACCELERATOR], eks[:NODEGROUP]."""
    if value.lower() == "none":
        return None
    name, colon, label_value = value.partition(":")
    if "=" not in value and name.lower() in NODE_SELECTOR_SHORTCUTS:
        key, default = NODE_SELECTOR_SHORTCUTS[name.lower()]
        if colon and not label_value:
            raise ValueError(f"node_selector: {value!r}: give the value after the colon")
        return key, label_value or default
    key, sep, label = value.partition("=")
    if not sep or not key or not label:
        raise ValueError(f"node_selector: expected LABEL_KEY=VALUE, gke[:TYPE], "
                         f"eks[:NODEGROUP], nvidia or none, got {value!r}")
    return key, label


def _setting(default: Any, help: str, *, flag: str | None = None,
             metavar: str | None = None, repeat: bool = False) -> Any:
    """`typed_config.setting`, and how its command-line flag is spelled where that is not
    `--<field-name>` with the kind's metavar: `flag` (a bool's `--X` / `--no-X`),
    `metavar`, and `repeat` (a list field's flag given once per item)."""
    declared = setting(default, help)
    return dataclasses.field(
        default=declared.default, default_factory=declared.default_factory,
        metadata={**declared.metadata, "flag": flag, "metavar": metavar, "repeat": repeat})


@dataclass(frozen=True)
class ClusterSettings:
    """Every compile-time setting of the pipeline on a cluster (defaults: a sane GPU pool).
    Each field's help says what it does; the flags of `pipeline compile` are made from
    them (add_cluster_flags).

    Images: `image` / `gpu_image` ('' for REGISTRY/postergenre[-gpu]:TAG when `registry`
    is given, else the placeholders, which `submit` refuses). Secret, ConfigMap and pull
    secret settings are Kubernetes object names ('' turns that injection off). Opt-in,
    for newer KFP backends only (BACKEND_FEATURES): `security_context`,
    `optional_secrets`; `kfp_backend` turns on those its version knows and refuses the
    others.
    """

    registry: str = _setting("", "image registry, e.g. ghcr.io/acme: the images are "
                             "REGISTRY/postergenre:TAG and REGISTRY/postergenre-gpu:TAG",
                             metavar="REGISTRY")
    tag: str = _setting("", "image tag, or a digest sha256:... ('': the package version)",
                        metavar="TAG")
    image: str = _setting("", "CPU image, a full reference (digest welcome: "
                          "...@sha256:...); overrides registry/tag", metavar="IMAGE")
    gpu_image: str = _setting("", "GPU image of the training tasks; overrides registry/tag",
                              metavar="IMAGE")
    gpu_type: str = _setting(GPU_RESOURCE, "accelerator resource name", metavar="RESOURCE")
    gpu_count: int = _setting(1, "GPUs per training task")
    node_selector: str = _setting(
        "=".join(DEFAULT_GPU_NODE_LABEL), "GPU node-pool label KEY=VALUE (the default: "
        "NVIDIA's GPU operator only); 'gke[:TYPE]' is cloud.google.com/gke-accelerator=TYPE "
        "(default nvidia-l4), 'eks[:GROUP]' eks.amazonaws.com/nodegroup=GROUP (default "
        "gpu), 'nvidia' the default, 'none' no selector", metavar="KEY=VALUE")
    gpu_toleration: bool = _setting(True, "tolerate the nvidia.com/gpu:NoSchedule taint")
    shm_size: str = _setting("8Gi", "/dev/shm (memory) of training tasks",
                             metavar="QUANTITY")
    cpu: str = _setting("1:2", "CPU of every non-training task", metavar="REQ[:LIM]")
    memory: str = _setting("4G:8G", "memory of every non-training task",
                           metavar="REQ[:LIM]")
    gpu_task_cpu: str = _setting("4:8", "CPU of a training task", metavar="REQ[:LIM]")
    gpu_task_memory: str = _setting("16G:32G", "memory of a training task",
                                    metavar="REQ[:LIM]")
    tmdb_secret: str = _setting("postergenre-tmdb", "Secret with the TMDb keys api-key / "
                                "read-access-token ('' for none)", metavar="NAME")
    s3_secret: str = _setting(
        "postergenre-s3", "Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, given to "
        "ingest, train, evaluate and register as POSTERGENRE_AWS_* ('' for none: EKS IRSA or "
        "Pod Identity, where the runs' service account has S3 access; not GKE's Workload "
        "Identity, whose GCP credentials no S3 client uses: give GKE keys)", metavar="NAME")
    s3_config_map: str = _setting("postergenre-s3", "ConfigMap with AWS_ENDPOINT_URL (MinIO "
                                  "or another S3-compatible store; '' for none)",
                                  metavar="NAME")
    image_pull_secrets: tuple[str, ...] = _setting(
        (), "Secret for pulling the images from a private registry (repeatable)",
        flag="image_pull_secret", metavar="NAME", repeat=True)
    image_pull_policy: str = _setting(
        "", "imagePullPolicy of every task, Always, IfNotPresent or Never ('': Always for an "
        "image given by tag, so that a tag pushed again is pulled again; the node's default "
        "for one pinned by digest)", metavar="POLICY")
    model_registry: str = _setting("", "default of the run parameter `registry`, e.g. "
                                   "s3://bucket/postergenre/registry (without it every run "
                                   "must pass -p registry=...)", metavar="URI")
    require_gpu: bool = _setting(True, "fail a training task at once when it sees no GPU "
                                 "(--no-require-gpu: let it train on the CPU)")
    retries: int = _setting(2, "retries of a failed task")
    retry_backoff: str = _setting("60s", "wait before the first retry", metavar="DURATION")
    retry_backoff_factor: float = _setting(2.0, "each further wait is this many times longer")
    retry_backoff_max: str = _setting("12h", "no retry after this long", metavar="DURATION")
    pipeline_root: str = _setting("", "where KFP writes artifacts, e.g. "
                                  "s3://bucket/postergenre, whose credentials KFP's launcher "
                                  "reads from the kfp-launcher ConfigMap's providers "
                                  "(k8s/components/s3-pipeline-root, or eks-irsa) ('': the "
                                  "cluster's)", metavar="URI")
    caching: bool = _setting(True, "let tasks reuse cached results (--no-cache: none does)",
                             flag="cache")
    cache_ingest: bool = _setting(False, "cache ingest too (only for data pinned by "
                                  "data_version; a TMDb crawl must not be cached)")
    kfp_backend: str = _setting("", "turn on every setting that only newer backends know "
                                "(below) that this KFP backend version knows, and refuse "
                                "one it does not, e.g. 2.16.0 ('': none is on unless "
                                "given)", metavar="VERSION")
    security_context: bool = _setting(False, "runAsUser/runAsGroup 10001 and runAsNonRoot "
                                      "on every task (KFP 2.16.0+, which also sets "
                                      "allowPrivilegeEscalation: false, capabilities.drop "
                                      "[ALL] and seccomp RuntimeDefault on every task by "
                                      "itself; without it tasks run as the image's USER "
                                      "10001 all the same)")
    optional_secrets: bool = _setting(False, "the TMDb and S3 Secrets and the S3 ConfigMap "
                                      "may be missing (KFP 2.15.0+; without it they must "
                                      "exist, even if empty)")
    git_commit: str = _setting(COMPILING_CHECKOUT, "the commit every artifact's lineage "
                               "records (HEAD: the compiling checkout's, -dirty if edited; "
                               "'' for none)", metavar="SHA")
    ingest_scratch: str = _setting("40Gi", "size limit of ingest's /tmp, an emptyDir ('' "
                                   "leaves /tmp on the container's disk, unbounded)",
                                   metavar="QUANTITY")

    def __post_init__(self) -> None:  # noqa: C901 - one check per setting
        if not self.image or not self.gpu_image:
            cpu, gpu = self._registry_images()
            object.__setattr__(self, "image", self.image or cpu)
            object.__setattr__(self, "gpu_image", self.gpu_image or gpu)
        if self.gpu_count < 1:
            raise ValueError(f"gpu_count: {self.gpu_count} (the training tasks need >= 1 GPU)")
        node_label(self.node_selector)
        if not _QUANTITY.match(self.shm_size):
            raise ValueError(f"shm_size: {self.shm_size!r} is not a Kubernetes quantity")
        # Each REQUEST[:LIMIT] setting parses into quantities (a ValueError names it).
        Resources.from_pairs(self.cpu, self.memory)
        Resources.from_pairs(self.gpu_task_cpu, self.gpu_task_memory)
        if self.ingest_scratch and not _QUANTITY.match(self.ingest_scratch):
            raise ValueError(f"ingest_scratch: {self.ingest_scratch!r} is not a Kubernetes "
                             "quantity (e.g. '40Gi'; '' for none)")
        if self.pipeline_root and "://" not in self.pipeline_root:
            raise ValueError(f"pipeline_root: {self.pipeline_root!r}, expected a URI such as "
                             "s3://bucket/pipeline-root")
        if self.model_registry and not is_registry_uri(self.model_registry):
            raise ValueError(f"model_registry: {self.model_registry!r}, {REGISTRY_URI_HINT}")
        object.__setattr__(self, "image_pull_secrets", tuple(self.image_pull_secrets))
        if not all(self.image_pull_secrets):
            raise ValueError(f"image_pull_secrets: {self.image_pull_secrets!r}, expected "
                             "Secret names")
        if self.image_pull_policy not in ("", *PULL_POLICIES):
            raise ValueError(f"image_pull_policy: {self.image_pull_policy!r} is not one of "
                             f"{', '.join(PULL_POLICIES)} ('' for the default)")
        if self.retries < 0:
            raise ValueError(f"retries: {self.retries} (0 for none)")
        if int(self.retry_backoff_factor) != self.retry_backoff_factor \
                or self.retry_backoff_factor < 1:
            # KFP 2.14's Argo compiler casts the factor to an integer.
            raise ValueError(f"retry_backoff_factor: {self.retry_backoff_factor}, expected a "
                             "whole number >= 1")
        from kfp.dsl.structures import convert_duration_to_seconds

        for name in ("retry_backoff", "retry_backoff_max"):
            try:
                convert_duration_to_seconds(getattr(self, name))
            except (ValueError, IndexError, AttributeError):
                raise ValueError(f"{name}: {getattr(self, name)!r}, expected a duration "
                                 "such as '60s', '10m' or '12h'") from None
        if self.kfp_backend:
            try:
                version_key(self.kfp_backend)
            except ValueError:
                raise ValueError(f"kfp_backend: expected a version such as 2.15.0, got "
                                 f"{self.kfp_backend!r}") from None
            object.__setattr__(self, "kfp_backend", self.kfp_backend.lstrip("v"))
            too_new = [BACKEND_FEATURES[n].flag for n in self.features()
                       if version_key(BACKEND_FEATURES[n].since) > version_key(self.kfp_backend)]
            if too_new:
                raise ValueError(f"--kfp-backend {self.kfp_backend}: {', '.join(too_new)} "
                                 f"needs {self.min_backend_version()} or newer")

    def _registry_images(self) -> tuple[str, str]:
        """(CPU image, GPU image) from `registry` and `tag`, else the placeholders."""
        if not self.registry:
            return DEFAULT_IMAGE, DEFAULT_GPU_IMAGE
        from postergenre import __version__

        tag = self.tag or __version__
        base = self.registry.rstrip("/")
        sep = "@" if tag.startswith("sha256:") else ":"
        return f"{base}/{IMAGE_NAMES['cpu']}{sep}{tag}", f"{base}/{IMAGE_NAMES['gpu']}{sep}{tag}"

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> ClusterSettings:
        """Settings from a mapping of the given ones (flags, a file: checked and coerced
        as the stages' settings are, errors naming `cluster.<setting>`); with
        `kfp_backend`, each opt-in feature not given is on where that version knows it."""
        values = dict(values)
        if values.get("kfp_backend"):
            try:
                features = cls.features_for(values["kfp_backend"])
            except ValueError:
                features = {}  # __post_init__ says what is wrong with the version
            for name, known in features.items():
                values.setdefault(name, known)
        return from_mapping(cls, values, "cluster")

    @property
    def node_label(self) -> tuple[str, str] | None:
        """The GPU node pool's (label key, value), None for no node selector."""
        return node_label(self.node_selector)

    @property
    def cpu_resources(self) -> Resources:
        return Resources.from_pairs(self.cpu, self.memory)

    @property
    def gpu_resources(self) -> Resources:
        return Resources.from_pairs(self.gpu_task_cpu, self.gpu_task_memory)

    def image_for(self, stage: str) -> str:
        """The image `stage` runs in (its profile: GPU or CPU)."""
        return self.gpu_image if STAGE_PROFILES[stage].gpu else self.image

    def stage_images(self) -> dict[str, str]:
        """Every stage -> its image (components.build_components' argument)."""
        return {stage: self.image_for(stage) for stage in STAGE_PROFILES}

    def pull_policy(self, image: str) -> str | None:
        """The imagePullPolicy of a task running `image` (None: the node's default)."""
        if self.image_pull_policy:
            return self.image_pull_policy
        return None if pinned_by_digest(image) else "Always"

    def cached(self, stage: str) -> bool:
        """Whether `stage`'s task may reuse a cached result (its profile's cache policy)."""
        policy = STAGE_PROFILES[stage].cache
        return self.caching and (policy == CACHED
                                 or (policy == CACHED_IF_ASKED and self.cache_ingest))

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
        if not self.model_registry:
            out.append("the run parameter `registry` defaults to a folder inside the task's "
                       "pod, lost when it ends: compile with --model-registry s3://... or "
                       "pass -p registry=s3://... to submit")
        return out

    @staticmethod
    def features_for(version: str) -> dict[str, bool]:
        """Every opt-in feature, on where the KFP backend `version` knows it."""
        have = version_key(version)
        return {name: version_key(f.since) <= have for name, f in BACKEND_FEATURES.items()}


# ---- the command line ---------------------------------------------------------------------

def _dest(name: str) -> str:
    return "cluster__" + name


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ClusterSettings field, with its help and default (`--X` / `--no-X` for
    a yes/no setting); a flag not given leaves the setting at its default."""
    group = parser.add_argument_group("cluster settings (compiled into the YAML; the "
                                      "security_context and optional_secrets settings "
                                      "need newer KFP backends)")
    hints = typing.get_type_hints(ClusterSettings)
    for field in dataclasses.fields(ClusterSettings):
        meta = field.metadata
        flag = "--" + (meta["flag"] or field.name).replace("_", "-")
        default = (field.default if field.default is not dataclasses.MISSING
                   else field.default_factory())  # type: ignore[operator]
        shown = (",".join(default) or "none") if isinstance(default, tuple) else default
        text = f"{meta['help']} (default: {shown if shown != '' else repr('')})"
        kwargs: dict[str, Any] = {"dest": _dest(field.name), "default": argparse.SUPPRESS,
                                  "help": text.replace("%", "%%")}
        if hints[field.name] is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif meta["repeat"]:
            group.add_argument(flag, action="append", metavar=meta["metavar"], **kwargs)
        else:
            metavar = meta["metavar"] or {int: "N", float: "X", str: "TEXT"}[hints[field.name]]
            group.add_argument(flag, metavar=metavar, **kwargs)


def settings_from_args(args: argparse.Namespace) -> ClusterSettings:
    """The cluster flags given (add_cluster_flags) -> ClusterSettings (a ValueError names a
    bad one)."""
    return ClusterSettings.from_values({
        field.name: getattr(args, _dest(field.name))
        for field in dataclasses.fields(ClusterSettings) if hasattr(args, _dest(field.name))})


GPU_CHECK_NAME = "postergenre-gpu-check"


def gpu_check_manifests(settings: ClusterSettings, namespace: str) -> list[dict]:
    """A one-off Job that lands where the training tasks land and asks for what they ask
    for (node selector, toleration, accelerator, /dev/shm, resources, image and its pull
    secrets and policy, all from `settings`, as the compiled pipeline has them), and runs
    the GPU image's own check with --gpu (driver, CUDA, TensorFlow sees a GPU); and a
    NetworkPolicy that shuts its pod off the network. No ServiceAccount is named (the
    namespace's `default`, which every namespace has) and none's token is mounted; the
    Istio sidecar of a Kubeflow profile namespace is kept out, or the Job never ends."""
    labels = {"app.kubernetes.io/part-of": "postergenre",
              "app.kubernetes.io/name": GPU_CHECK_NAME}
    resources = settings.gpu_resources
    gpus = {settings.gpu_type: str(settings.gpu_count)}
    container: dict[str, Any] = {
        "name": "gpu-check", "image": settings.gpu_image,
        "command": ["python3", GPU_CHECK_SCRIPT, "--gpu"],
        "resources": {
            "requests": {"cpu": resources.cpu_request, "memory": resources.memory_request,
                         **gpus},
            "limits": {"cpu": resources.cpu_limit, "memory": resources.memory_limit, **gpus}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"},
                         {"name": "tmp", "mountPath": SCRATCH_MOUNT}]}
    policy = settings.pull_policy(settings.gpu_image)
    if policy:
        container["imagePullPolicy"] = policy
    pod: dict[str, Any] = {
        "restartPolicy": "Never", "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER,
                            "runAsGroup": RUN_AS_USER,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory",
                                                  "sizeLimit": settings.shm_size}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]}
    if settings.node_label is not None:
        pod["nodeSelector"] = dict([settings.node_label])
    if settings.gpu_toleration:
        pod["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists",
                               "effect": "NoSchedule"}]
    if settings.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": GPU_CHECK_NAME, "namespace": namespace, "labels": labels},
           "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 3600,
                    "activeDeadlineSeconds": 900,
                    "template": {"metadata": {"labels": dict(labels), "annotations": {
                        "sidecar.istio.io/inject": "false"}}, "spec": pod}}}
    # The check needs no network (the kubelet, not the pod, pulls the image).
    network = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": GPU_CHECK_NAME, "namespace": namespace,
                            "labels": {"app.kubernetes.io/part-of": "postergenre"}},
               "spec": {"podSelector": {"matchLabels": {
                   "app.kubernetes.io/name": GPU_CHECK_NAME}},
                   "policyTypes": ["Ingress", "Egress"]}}
    return [job, network]


def pinned_by_digest(image: str) -> bool:
    """An image reference that names its content (`...@sha256:...`), not a tag that can
    be pushed again."""
    return "@sha256:" in image


def is_registry_uri(location: str) -> bool:
    """A model registry a cluster's tasks can share: s3:// (the images reach remote
    storage through s3fs alone, postergenre.data.storage), not a folder in the pod."""
    return location.startswith("s3://")


def apply_gpu_node_pool(task: dsl.PipelineTask, settings: ClusterSettings) -> None:
    """Put a training task on the GPU node pool: accelerator limit, node selector,
    a toleration for the GPU taint, /dev/shm in memory, and the GPU pod's resources."""
    from kfp import kubernetes

    task.set_accelerator_type(settings.gpu_type).set_accelerator_limit(settings.gpu_count)
    if settings.node_label is not None:
        kubernetes.add_node_selector(task, *settings.node_label)
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
    from kfp import kubernetes

    for env, value in ((IMAGE_ENV, image), (GIT_COMMIT_ENV, commit)):
        annotation = LINEAGE_ANNOTATIONS[env]
        kubernetes.add_pod_annotation(task, annotation, value)
        kubernetes.use_field_path_as_env(task, env, f"metadata.annotations['{annotation}']")


def apply_cluster_settings(settings: ClusterSettings) -> None:
    """Configure every task of the pipeline being defined from its stage's profile
    (STAGE_PROFILES; call it last in the pipeline body)."""
    from kfp import kubernetes
    from kfp.dsl import pipeline_context

    pipeline = pipeline_context.Pipeline.get_default_pipeline()
    if pipeline is None:
        raise RuntimeError("apply_cluster_settings must be called inside a pipeline body")
    optional = settings.optional_secrets
    commit = settings.git_commit
    if commit == COMPILING_CHECKOUT:
        from postergenre.lineage import git_commit

        commit = git_commit()
    for task in pipeline.tasks.values():
        stage = _component_name(task)
        profile = STAGE_PROFILES[stage]
        if profile.gpu:
            apply_gpu_node_pool(task, settings)
        else:
            settings.cpu_resources.apply(task)
        apply_lineage(task, task.container_spec.image, commit)
        if profile.scratch and settings.ingest_scratch:
            # emptyDirs are world-writable, so the image's non-root user can write there.
            kubernetes.empty_dir_mount(task, volume_name="scratch", mount_path=SCRATCH_MOUNT,
                                       size_limit=settings.ingest_scratch)
        if settings.security_context:
            # Without it the task runs as the image's USER (10001, docker/Dockerfile.*).
            kubernetes.set_security_context(task, run_as_user=RUN_AS_USER,
                                            run_as_group=RUN_AS_USER, run_as_non_root=True)
        if settings.image_pull_secrets:
            kubernetes.set_image_pull_secrets(task, list(settings.image_pull_secrets))
        policy = settings.pull_policy(task.container_spec.image)
        if policy:
            # A node that holds an image by its tag does not pull it again unless told:
            # a tag pushed again would run the old code.
            kubernetes.set_image_pull_policy(task, policy)
        if "tmdb" in profile.secrets and settings.tmdb_secret:
            # The demo and DVC sources need no TMDb key, and a missing key is reported by
            # ingest itself, naming the variable.
            kubernetes.use_secret_as_env(task, settings.tmdb_secret, TMDB_SECRET_KEYS,
                                         optional=optional)
        if "s3" in profile.secrets and settings.s3_secret:
            kubernetes.use_secret_as_env(task, settings.s3_secret, S3_SECRET_KEYS,
                                         optional=optional)
        if "s3" in profile.secrets and settings.s3_config_map:
            kubernetes.use_config_map_as_env(task, settings.s3_config_map, S3_CONFIG_KEYS,
                                             optional=optional)
        _drop_unset_optional(task)
        task.set_caching_options(settings.cached(stage))
        if settings.retries:
            # Preempted nodes, a flaky API or S3: every task is safe to run again (each
            # writes only its own outputs; register writes an entry named by its bytes).
            task.set_retry(num_retries=settings.retries, backoff_duration=settings.retry_backoff,
                           backoff_factor=settings.retry_backoff_factor,
                           backoff_max_duration=settings.retry_backoff_max)
