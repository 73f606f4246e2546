"""The cluster settings are declared once (pipelines/platform.py): the flags of `pipeline
compile` / `submit` / `upload` are made from ClusterSettings' fields, and every task's
image, node pool, Secrets and cache policy follow from its stage's profile."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from postergenre.cli import build_parser
from postergenre.components import STAGES
from postergenre.pipelines.platform import (
    CACHED,
    CACHED_IF_ASKED,
    NEVER_CACHED,
    S3_SECRET_KEYS,
    STAGE_PROFILES,
    TMDB_SECRET_KEYS,
    ClusterSettings,
    settings_from_args,
)
from postergenre.pipelines.runner import compile_pipeline

IMAGES = {"image": "registry.example/postergenre@sha256:" + "c" * 64,
          "gpu_image": "registry.example/postergenre-gpu@sha256:" + "d" * 64}
# One value other than the default for every setting, as given on the command line, and
# the value the field then holds. A new field without a row here fails the test below.
GIVEN = {
    "registry": (["--registry", "ghcr.io/acme"], "ghcr.io/acme"),
    "tag": (["--tag", "0.2.0"], "0.2.0"),
    "image": (["--image", "x.example/cpu:1"], "x.example/cpu:1"),
    "gpu_image": (["--gpu-image", "x.example/gpu:1"], "x.example/gpu:1"),
    "gpu_type": (["--gpu-type", "amd.com/gpu"], "amd.com/gpu"),
    "gpu_count": (["--gpu-count", "2"], 2),
    "node_selector": (["--node-selector", "gke:nvidia-tesla-t4"], "gke:nvidia-tesla-t4"),
    "gpu_toleration": (["--no-gpu-toleration"], False),
    "shm_size": (["--shm-size", "1Gi"], "1Gi"),
    "cpu": (["--cpu", "2:4"], "2:4"),
    "memory": (["--memory", "1G"], "1G"),
    "gpu_task_cpu": (["--gpu-task-cpu", "8"], "8"),
    "gpu_task_memory": (["--gpu-task-memory", "64G:64G"], "64G:64G"),
    "tmdb_secret": (["--tmdb-secret", ""], ""),
    "s3_secret": (["--s3-secret", "keys"], "keys"),
    "s3_config_map": (["--s3-config-map", "endpoint"], "endpoint"),
    "image_pull_secrets": (["--image-pull-secret", "a", "--image-pull-secret", "b"],
                           ("a", "b")),
    "image_pull_policy": (["--image-pull-policy", "IfNotPresent"], "IfNotPresent"),
    "model_registry": (["--model-registry", "s3://b/registry"], "s3://b/registry"),
    "require_gpu": (["--no-require-gpu"], False),
    "retries": (["--retries", "0"], 0),
    "retry_backoff": (["--retry-backoff", "2m"], "2m"),
    "retry_backoff_factor": (["--retry-backoff-factor", "3"], 3.0),
    "retry_backoff_max": (["--retry-backoff-max", "1h"], "1h"),
    "pipeline_root": (["--pipeline-root", "s3://b/root"], "s3://b/root"),
    "caching": (["--no-cache"], False),
    "cache_ingest": (["--cache-ingest"], True),
    "kfp_backend": (["--kfp-backend", "v2.15.0"], "2.15.0"),
    "security_context": (["--security-context"], True),
    "optional_secrets": (["--optional-secrets"], True),
    "git_commit": (["--git-commit", "0" * 40], "0" * 40),
    "ingest_scratch": (["--ingest-scratch", ""], ""),
}


def _settings(*flags: str) -> ClusterSettings:
    return settings_from_args(build_parser().parse_args(["pipeline", "compile", *flags]))


def test_every_setting_is_one_flag_whose_default_is_the_fields():
    """No default is written twice: compile without flags gives ClusterSettings(), and
    each field has one flag that sets exactly it."""
    assert _settings() == ClusterSettings()
    names = [field.name for field in dataclasses.fields(ClusterSettings)]
    assert sorted(GIVEN) == sorted(names)
    for name, (flags, expected) in GIVEN.items():
        if name == "security_context":  # needs a newer backend than kfp_backend's default
            flags = [*flags, "--kfp-backend", "2.16.0"]
        settings = _settings(*flags)
        assert getattr(settings, name) == expected, name
        changed = {n for n in names if getattr(settings, n) != getattr(ClusterSettings(), n)}
        # Images follow registry/tag; kfp_backend turns on what 2.15.0 / 2.16.0 knows.
        follows = {"registry": {"image", "gpu_image"}, "tag": set(),
                   "kfp_backend": {"optional_secrets"},
                   "security_context": {"kfp_backend", "optional_secrets"}}.get(name, set())
        assert changed - follows == {name}, (name, changed)


def test_bad_values_name_the_setting(capsys):
    from postergenre.cli import main

    for flags, message in ((["--gpu-count", "two"], "cluster.gpu_count: 'two' is not an integer"),
                           (["--node-selector", "gke:"], "node_selector: 'gke:'"),
                           (["--cpu", ":2"], "cpu: expected REQUEST[:LIMIT]"),
                           (["--kfp-backend", "two"], "kfp_backend: expected a version")):
        assert main(["pipeline", "compile", "--output", "unused.yaml", *flags]) == 2, flags
        assert message in capsys.readouterr().err, flags


def test_images_follow_registry_and_tag():
    assert ClusterSettings().image == "ghcr.io/postergenre/postergenre:0.1.0"
    settings = ClusterSettings(registry="ghcr.io/acme/", tag="sha256:" + "a" * 64)
    assert settings.image == "ghcr.io/acme/postergenre@sha256:" + "a" * 64
    assert settings.gpu_image == "ghcr.io/acme/postergenre-gpu@sha256:" + "a" * 64
    assert ClusterSettings(registry="r.example", image="x/y:1").gpu_image == \
        "r.example/postergenre-gpu:0.1.0"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = compile_pipeline(tmp_path_factory.mktemp("profiles") / "p.yaml",
                            ClusterSettings(**IMAGES, cache_ingest=False))
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_every_task_follows_its_stages_profile(compiled):
    """One table says what each stage gets; every compiled task agrees with it."""
    spec, executors = compiled
    assert set(STAGE_PROFILES) == set(STAGES)
    settings = ClusterSettings(**IMAGES)
    seen = set()

    def walk(dag):
        for task in dag["tasks"].values():
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                walk(component["dag"])
                continue
            stage = task["componentRef"]["name"].removeprefix("comp-").replace("-", "_")
            profile = STAGE_PROFILES[stage]
            seen.add(stage)
            label = component["executorLabel"]
            container = spec["deploymentSpec"]["executors"][label]["container"]
            k8s = executors[label]
            assert container["image"] == (IMAGES["gpu_image"] if profile.gpu
                                          else IMAGES["image"]), stage
            assert ("accelerator" in container["resources"]) == profile.gpu, stage
            assert ("nodeSelector" in k8s) == profile.gpu, stage
            secrets = {s["secretName"]: {m["secretKey"] for m in s["keyToEnv"]}
                       for s in k8s.get("secretAsEnv", [])}
            expected = {}
            if "tmdb" in profile.secrets:
                expected[settings.tmdb_secret] = set(TMDB_SECRET_KEYS)
            if "s3" in profile.secrets:
                expected[settings.s3_secret] = set(S3_SECRET_KEYS)
            assert secrets == expected, stage
            assert ("configMapAsEnv" in k8s) == ("s3" in profile.secrets), stage
            scratch = [m for m in k8s.get("emptyDirMounts", []) if m["volumeName"] == "scratch"]
            assert bool(scratch) == profile.scratch, stage
            cached = task.get("cachingOptions", {}).get("enableCache", False)
            assert cached == (profile.cache == CACHED), stage
            assert profile.cache in (CACHED, NEVER_CACHED, CACHED_IF_ASKED)

    walk(spec["root"]["dag"])
    assert seen == set(STAGES)
