"""The CPU image built for real with podman, then the whole pipeline with every task in it
(kfp.local's DockerRunner against podman's Docker-compatible socket: scripts/
container_run.sh), read-only root, no network, as UID 10001. Skipped only where podman is
not installed or cannot run a trivial container; the GPU image is `make images`' job.

Slow: the first build downloads and installs every locked dependency (and, where no
registry image can be pulled, makes a Debian base with mmdebstrap); later builds reuse
podman's layer cache and take seconds."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import DEMO_MODELS

ROOT = Path(__file__).resolve().parents[1]
TAG = "test"  # apart from `make images`' tags, sharing their layers
IMAGE = f"localhost/postergenre:{TAG}"
PROBE_IMAGE = "localhost/postergenre-probe:true"
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "docker" / "containers.conf"),
       "ENGINE": "podman", "TAG": TAG, "REGISTRY": "localhost"}
LOCKED_DOWN = ["--read-only", "--tmpfs", "/tmp:rw,size=512m,mode=1777", "--network", "none"]
pytestmark = pytest.mark.slow


def podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout, check=False)


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def _trivial_image(folder: Path) -> tuple[Path, str]:
    """A root filesystem holding only `true` and the libraries it links (no registry image
    is needed to ask podman for a container), and the path of `true` in it."""
    true = shutil.which("true") or "/bin/true"
    ldd = subprocess.run(["ldd", true], capture_output=True, text=True, check=False).stdout
    libs = re.findall(r"(/\S+) \(0x", ldd)
    path = folder / "true.tar"
    with tarfile.open(path, "w") as tar:
        for file in [true, *libs]:
            tar.add(os.path.realpath(file), arcname=file.lstrip("/"), recursive=False)
    return path, true


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman runc mmdebstrap)")
    tar, true = _trivial_image(tmp_path_factory.mktemp("probe"))
    imported = podman("import", str(tar), PROBE_IMAGE)
    if imported.returncode != 0:
        pytest.skip(f"podman cannot import a trivial image here: {_last_line(imported.stderr)}")
    ran = podman("run", "--rm", "--network", "none", PROBE_IMAGE, true)
    if ran.returncode != 0:
        pytest.skip(f"podman cannot run a trivial container here: {_last_line(ran.stderr)}")
    return "podman"


@pytest.fixture(scope="module")
def cpu_image(engine):
    built = subprocess.run([str(ROOT / "scripts" / "build_images.sh"), "cpu"], cwd=ROOT,
                           env=ENV, capture_output=True, text=True, timeout=1500, check=False)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return IMAGE


def test_the_image_is_labelled_and_runs_as_uid_10001(cpu_image):
    inspected = podman("image", "inspect", cpu_image)
    assert inspected.returncode == 0, inspected.stderr
    (config,) = json.loads(inspected.stdout)
    labels = config["Config"]["Labels"]
    version = re.search(r'^version = "(.*)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.title"] == "postergenre"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=False).stdout.strip()
    if head:
        assert labels["org.opencontainers.image.revision"].startswith(head)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
                        labels["org.opencontainers.image.created"])
    assert "org.opencontainers.image.source" in labels
    assert config["Config"]["User"] == "10001:10001"


def test_the_image_works_read_only_offline_and_cannot_pip_install(cpu_image):
    script = ("import os, matplotlib.pyplot, tensorflow, keras, kfp, postergenre.components;"
              "import cv2, great_expectations, dvc.api;"
              "print(os.getuid(), os.getgid(), os.environ['HOME'],"
              " os.environ['POSTERGENRE_IMAGE'])")
    ran = podman("run", "--rm", *LOCKED_DOWN, cpu_image, "python3", "-c", script)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.split() == ["10001", "10001", "/tmp", IMAGE]
    # The root filesystem is read-only for the task, and pip is not in the image at all.
    ran = podman("run", "--rm", *LOCKED_DOWN, cpu_image, "sh", "-c",
                 "touch /opt/venv/x 2>&1; python3 -m pip --version 2>&1; postergenre --help")
    assert "Read-only file system" in ran.stdout, ran.stdout
    assert "No module named pip" in ran.stdout, ran.stdout
    assert "usage: postergenre" in ran.stdout, ran.stdout


def test_the_whole_pipeline_runs_with_every_task_in_the_image(cpu_image, tmp_path):
    root = tmp_path / "root"
    env = {**ENV, "IMAGES": "cpu", "SKIP_BUILD": "1", "ROOT": str(root),
           "PYTHON": sys.executable}
    tiny = ["--params", "params.yaml", "--params", "params-tiny.yaml"]
    run = subprocess.run([str(ROOT / "scripts" / "container_run.sh"), *tiny], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=1200, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert re.search(r"^gate: blessed \S+", run.stdout, re.M), run.stdout[-3000:]
    artifacts = re.search(r"^artifacts: (.+)$", run.stdout, re.M)
    assert artifacts, run.stdout[-6000:]
    run_dir = Path(artifacts[1])
    outputs = {path.parent.relative_to(run_dir).as_posix(): json.loads(path.read_text())
               for path in run_dir.rglob("executor_output.json")}
    tasks = {name.rsplit("/", 1)[-1] for name in outputs}
    assert tasks == {"ingest", "validate", "split", "augment", "train", "evaluate", "roc",
                     "gate", "register", "batch-predict"}, sorted(outputs)
    for per_model in ("/train", "/roc"):
        assert sum(name.endswith(per_model) for name in outputs) == len(DEMO_MODELS), per_model
    # Each task ran in the image (its lineage names it; kfp.local's subprocess runner
    # would say `local`), as the image's user, and wrote only into the pipeline root.
    for name, out in outputs.items():
        for artifact_name, artifacts in out["artifacts"].items():
            metadata = artifacts["artifacts"][0]["metadata"]
            assert metadata["image"] == IMAGE, (name, artifact_name)
        assert (run_dir / name / "executor_output.json").stat().st_uid == 10001, name
    latest = json.loads((root / "registry" / "latest.json").read_text())
    assert (root / "registry" / latest["path"] / "model.keras").is_file()
