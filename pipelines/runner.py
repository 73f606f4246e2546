"""Entry points for the pipeline: compile to YAML IR, or run locally with kfp.local.

Submitting to a cluster (`kfp.Client`) lives in submit.py; the cluster settings that
compile into the YAML in platform.py.
"""

from __future__ import annotations

import builtins
import inspect
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml
from kfp import compiler, local

from postergenre.configs import Experiment
from postergenre.pipelines.pipeline import PIPELINE_NAME, create_pipeline
from postergenre.pipelines.platform import ClusterSettings

# kfp.local ignores the cluster settings, but not the parameter defaults they set: train
# on whatever this machine has (params.yaml's require_gpu).
LOCAL_SETTINGS = ClusterSettings(require_gpu=False)
# The tmpfs at /tmp of each task of a container run: its temporary files (ingest's
# downloads and unpacking among them) and caches, in memory.
CONTAINER_TMP_SIZE = "4g"
# The compiled spec's parameter types -> the Python type a `-p key=value` becomes.
_SPEC_TYPES = {"STRING": str, "NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "LIST": list,
               "BOOLEAN": bool, "STRUCT": dict}


def compile_pipeline(output: str | os.PathLike[str], settings: ClusterSettings | None = None,
                     experiment: Experiment | None = None, *, image: str | None = None
                     ) -> Path:
    """Write the pipeline's YAML IR (what `kfp.Client` uploads) to `output`, with the
    `experiment`'s sections (default: params.yaml) as its parameters' defaults.

    `image` alone (no `settings`) runs every stage, training included, in that one image.
    """
    if settings is None:
        settings = ClusterSettings(image=image, gpu_image=image) if image else ClusterSettings()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(create_pipeline(settings, experiment), str(output))
    return output


def pipeline_parameters(experiment: Experiment | None = None) -> dict[str, inspect.Parameter]:
    """The pipeline's run-time parameters, by name."""
    return dict(inspect.signature(
        create_pipeline(LOCAL_SETTINGS, experiment).pipeline_func).parameters)


def _coerce(key: str, raw: str, kind: type):
    try:
        if kind is list:
            return [item for item in raw.split(",") if item]
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        if kind is dict:
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError(raw)
            return value
        if kind in (int, float):
            return kind(raw)
        return raw
    except ValueError:
        raise ValueError(f"parameter {key!r}: {raw!r} is not a valid {kind.__name__}") from None


def _parse(pairs: Sequence[str], known: Mapping[str, type]) -> dict:
    params: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ValueError(f"parameter {pair!r}: expected KEY=VALUE")
        if key not in known:
            raise ValueError(f"unknown pipeline parameter {key!r}; known: {', '.join(known)}")
        params[key] = _coerce(key, raw, known[key])
    return params


def parse_params(pairs: Sequence[str], experiment: Experiment | None = None) -> dict:
    """`key=value` strings -> typed pipeline arguments; unknown keys are an error."""
    return _parse(pairs, {name: p.annotation
                          for name, p in pipeline_parameters(experiment).items()})


def load_spec(package: str | os.PathLike[str]) -> dict:
    """A compiled pipeline (YAML IR) as a dict; a clear error if it is not one."""
    path = Path(package)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no compiled pipeline there "
                                "(run `postergenre pipeline compile --output {path}` first)")
    try:
        # With kfp-kubernetes settings the file holds two documents: the pipeline spec,
        # then its platform spec.
        spec = next(iter(yaml.safe_load_all(path.read_text())), None)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not YAML ({err})") from None
    if not isinstance(spec, dict) or "root" not in spec or "pipelineInfo" not in spec:
        raise ValueError(f"{path}: not a compiled KFP pipeline (no root / pipelineInfo)")
    return spec


def load_package(package: str | os.PathLike[str]) -> tuple[dict, dict]:
    """(pipeline spec, platform spec) of a compiled pipeline; the platform spec is {}
    when it has none (no kfp-kubernetes settings)."""
    spec = load_spec(package)
    docs = [d for d in yaml.safe_load_all(Path(package).read_text()) if d]
    return spec, (docs[1] if len(docs) > 1 and isinstance(docs[1], dict) else {})


def write_uncached(package: str | os.PathLike[str], output: str | os.PathLike[str]) -> Path:
    """A copy of the compiled `package` at `output` in which no task of any DAG (the
    root's, a ParallelFor's, a dsl.If's) reuses a cached result. kfp.Client's
    `enable_caching=False` rewrites the root DAG's tasks only (kfp 2.17.3,
    `client._override_caching_options`), which leaves the trainings and batch-predict
    cached."""
    spec, platform = load_package(package)
    dags = [spec["root"]["dag"], *(component["dag"] for component in
                                   spec.get("components", {}).values() if "dag" in component)]
    for dag in dags:
        for task in dag.get("tasks", {}).values():
            task.setdefault("cachingOptions", {}).pop("enableCache", None)
    output = Path(output)
    output.write_text(yaml.safe_dump_all([spec, platform] if platform else [spec],
                                         sort_keys=False))
    return output


def spec_parameters(spec: Mapping) -> dict[str, type]:
    """The run-time parameters a compiled pipeline declares, with their Python types."""
    declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    return {name: _SPEC_TYPES.get(d.get("parameterType"), str) for name, d in declared.items()}


def parse_spec_params(pairs: Sequence[str], spec: Mapping) -> dict:
    """`key=value` strings checked and typed against a compiled pipeline's parameters."""
    return _parse(pairs, spec_parameters(spec))


def run_local(pipeline_root: str | os.PathLike[str], experiment: Experiment | None = None,
              *, runner: local.SubprocessRunner | local.DockerRunner | None = None,
              settings: ClusterSettings = LOCAL_SETTINGS, **params) -> dict:
    """Run the whole pipeline on this machine with kfp.local, with the `experiment`'s
    sections (default: params.yaml) as the parameters' defaults.

    With the default `runner` (SubprocessRunner) every component runs in this Python
    environment (where postergenre is installed); with a DockerRunner
    (`run_in_containers`) each runs in `settings`' image for it. Resource requests and
    kfp-kubernetes settings are ignored locally, as kfp.local documents.
    """
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=runner or local.SubprocessRunner(use_venv=False),
               pipeline_root=str(root), raise_on_error=True)
    before = set(root.iterdir())
    with _print_restored():
        task = create_pipeline(settings, experiment)(**params)
    # kfp.local names a run's folder after the pipeline; a registry inside the root is not one.
    run_dirs = sorted(path for path in set(root.iterdir()) - before
                      if path.name.startswith(f"{PIPELINE_NAME}-"))
    run_dir = run_dirs[-1] if run_dirs else None
    blessing_path = run_dir / "gate" / "blessing" if run_dir else None
    blessing = (json.loads(blessing_path.read_text())
                if blessing_path and blessing_path.is_file() else {})
    return {"decision": task.output, "model": blessing.get("model"),
            "failed_rules": blessing.get("failed_rules", []),
            "run_dir": str(run_dir) if run_dir else None}


@contextmanager
def _print_restored() -> Iterator[None]:
    """Put `print` back as it was. kfp.local (2.17.3) indents each task's log by swapping
    `builtins.print` for the task's duration; the tasks of a ParallelFor (our trainings)
    run on threads, and a thread that saved another's indenting `print` as the original
    puts it back, so every later print of the process came out indented."""
    original = builtins.print
    try:
        yield
    finally:
        builtins.print = original


def container_runner(tmp_size: str = CONTAINER_TMP_SIZE,
                     environment: Mapping[str, str] | None = None) -> local.DockerRunner:
    """kfp.local's DockerRunner with every task locked down as on a hardened cluster: the
    image's own user (UID 10001), a read-only root filesystem with a tmpfs at /tmp (the
    images point HOME, TMPDIR and every cache there), and no network at all, so nothing
    can be downloaded or installed at run time. It talks to $DOCKER_HOST: a Docker daemon
    or podman's Docker-compatible service (`scripts/container_run.sh`)."""
    return local.DockerRunner(read_only=True, network_mode="none",
                              tmpfs={"/tmp": f"rw,size={tmp_size},mode=1777"},
                              environment=dict(environment or {}))


def _run_container_keeping_its_status(client, image: str, command: list[str],
                                      volumes: dict, **run_args) -> int:
    """kfp.local's `run_docker_container` (kfp 2.17.3), except that the container stays
    until its exit status is read. kfp starts it with auto_remove and reads the status
    after the logs end: podman has removed the container by then, and kfp counts a task
    whose status it cannot read as a success, so a failed task would pass unnoticed."""
    from kfp.local import docker_task_handler

    image = docker_task_handler.add_latest_tag_if_not_present(image)
    if not any(image in (found.tags + found.attrs.get("RepoDigests", []))
               for found in client.images.list()):
        client.images.pull(image)
    container = client.containers.run(image=image, command=command, detach=True,
                                      stdout=True, stderr=True, volumes=volumes, **run_args)
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(), end="")
        return container.wait()["StatusCode"]
    finally:
        container.remove(force=True)


@contextmanager
def _container_status_kept() -> Iterator[None]:
    from kfp.local import docker_task_handler

    original = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = _run_container_keeping_its_status
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = original


def run_in_containers(pipeline_root: str | os.PathLike[str], image: str,
                      gpu_image: str | None = None, experiment: Experiment | None = None,
                      **params) -> dict:
    """Run the whole pipeline with kfp.local's DockerRunner: every task in its image
    (training in `gpu_image`, default `image`), as `container_runner` sets it up.

    The pipeline root is bind-mounted at the same path, so the images' user must be able
    to write there (it is made world-writable); the model registry defaults to a folder
    in it, since a task's own folders vanish with its container. Tasks record this
    checkout's commit in their lineage, and their image's name (its POSTERGENRE_IMAGE).
    """
    from postergenre.lineage import GIT_COMMIT_ENV, git_commit

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o777)
    params.setdefault("registry", str(root / "registry"))
    # No retries: a failing task fails the run at once (kfp.local honours retry policies).
    settings = ClusterSettings(image=image, gpu_image=gpu_image or image, require_gpu=False,
                               retries=0)
    runner = container_runner(environment={GIT_COMMIT_ENV: git_commit()})
    with _container_status_kept():
        return run_local(root, experiment, runner=runner, settings=settings, **params)
