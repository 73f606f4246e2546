"""docker/: what can be checked without a container engine (none runs here; building
the images needs docker or buildah: `make images`). The files are parsed, not grepped
as a whole: instructions with continuation lines joined, comments dropped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = {"cpu": ROOT / "docker" / "Dockerfile.cpu", "gpu": ROOT / "docker" / "Dockerfile.gpu"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not pending):
            continue
        if stripped.startswith("#"):
            continue
        pending += " " + stripped.rstrip("\\").strip() if pending else stripped.rstrip("\\")
        if not stripped.endswith("\\"):
            keyword, _, args = pending.strip().partition(" ")
            out.append((keyword.upper(), args.strip()))
            pending = ""
    return out


def base_image(path: Path) -> str:
    steps = instructions(path)
    args = dict(re.match(r"(\w+)=(\S+)", a).groups() for k, a in steps if k == "ARG" and "=" in a)
    (from_,) = [a for k, a in steps if k == "FROM"]
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], from_)


def _lock_version(package: str) -> str:
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = re.match(rf"{re.escape(package)}==([^\s\\;]+)", line, re.IGNORECASE)
        if match:
            return match.group(1)
    raise AssertionError(f"{package} not in requirements.lock")


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_base_image_is_pinned(kind):
    image = base_image(DOCKERFILES[kind])
    name, _, tag = image.partition("@")[0].rpartition(":")
    assert name and tag and tag != "latest", image
    assert re.search(r"\d+\.\d+\.\d+", tag), f"{image}: pin a full version (or a digest)"


def test_gpu_base_is_tensorflows_gpu_image_at_the_locked_version():
    image = base_image(DOCKERFILES["gpu"])
    assert image == f"tensorflow/tensorflow:{_lock_version('tensorflow')}-gpu"


def test_cpu_base_python_matches_the_supported_range():
    tag = base_image(DOCKERFILES["cpu"]).split(":", 1)[1]
    assert re.match(r"3\.(11|12)\.\d+-slim", tag), tag


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_installs_the_package_and_kfp_from_the_lock_and_runs_as_non_root(kind):
    steps = instructions(DOCKERFILES[kind])
    runs = [a for k, a in steps if k == "RUN"]
    install = [r for r in runs if "pip install" in r]
    assert len(install) == 1
    # Every dependency hash-checked from the images' lock, then only the package unhashed.
    commands = [c.strip() for c in install[0].split("&&")]
    pips = [c for c in commands if "pip install" in c]
    assert len(pips) == 2, pips
    assert re.search(r"pip install --require-hashes -r requirements-image\.lock$", pips[0])
    assert re.search(r"pip install --no-deps --no-build-isolation \.$", pips[1])
    assert "import kfp, kfp.kubernetes, postergenre" in install[0]  # checked at build time
    copied = " ".join(a for k, a in steps if k == "COPY")
    for needed in ("docker/requirements-image.lock", "pyproject.toml", "README.md", "src",
                   "components", "pipelines"):
        assert needed in copied, needed
    users = [a for k, a in steps if k == "USER"]
    assert users and users[-1] == "10001:10001"  # the UID pipelines/platform.py runs as
    assert any("useradd --uid 10001 " in r for r in runs)
    # The last USER comes after every RUN: nothing runs as root in the final image.
    last_user = max(i for i, (k, _) in enumerate(steps) if k == "USER")
    assert all(k != "RUN" for k, _ in steps[last_user:])


def test_kfp_and_kfp_kubernetes_are_locked_to_one_version():
    assert _lock_version("kfp") == _lock_version("kfp-kubernetes")


def test_dockerignore_sends_only_what_the_images_install():
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"  # everything out, then only these back in
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"docker/requirements-image.lock", "pyproject.toml", "README.md", "src",
                       "components", "pipelines"}
