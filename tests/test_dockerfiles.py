"""docker/: what can be checked without building (tests/test_containers.py builds the CPU
image and runs the pipeline in it where podman works). The files are parsed, not grepped
as a whole: instructions with continuation lines joined, comments dropped, per stage."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from postergenre.pipelines.platform import GPU_CHECK_SCRIPT
from tests.helpers import IMAGE_LOCK, LOCK, parse_lock

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = {"cpu": ROOT / "docker" / "Dockerfile.cpu", "gpu": ROOT / "docker" / "Dockerfile.gpu"}
GPU_LOCK = ROOT / "docker" / "requirements-gpu.lock"
LOCKS = {"cpu": "requirements-image.lock", "gpu": "requirements-gpu.lock"}
OCI_LABELS = ("source", "revision", "version", "created", "title")
# Where a read-only root filesystem leaves a task room to write: /tmp (tmpfs, emptyDir).
WRITABLE_ENV = ("HOME", "TMPDIR", "MPLCONFIGDIR", "KERAS_HOME", "XDG_CACHE_HOME",
                "XDG_CONFIG_HOME")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += " " + stripped.rstrip("\\").strip() if pending else stripped.rstrip("\\")
        if not stripped.endswith("\\"):
            keyword, _, args = pending.strip().partition(" ")
            out.append((keyword.upper(), args.strip()))
            pending = ""
    return out


def stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    """The instructions of each build stage by name (the unnamed last one: "final"), FROM
    first; global ARGs before the first FROM dropped."""
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for step in instructions(path):
        if step[0] == "FROM":
            words = step[1].split()
            current = words[2] if len(words) == 3 and words[1].upper() == "AS" else "final"
            out[current] = []
        if current:
            out[current].append(step)
    return out


def base_image(path: Path) -> str:
    """The default base: the builder and the final image build FROM the BASE_IMAGE build
    argument, the package stage FROM the builder."""
    froms = {name: steps[0][1].split()[0] for name, steps in stages(path).items()}
    assert froms == {"builder": "${BASE_IMAGE}", "package": "builder",
                     "final": "${BASE_IMAGE}"}, froms
    (default,) = [a.split("=", 1)[1] for k, a in instructions(path) if k == "ARG"
                  and a.startswith("BASE_IMAGE=")]
    return default


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for keyword, args in stage:
        if keyword == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", args))
    return env


def labels_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    labels = {}
    for keyword, args in stage:
        if keyword == "LABEL":
            labels.update(re.findall(r'([\w.]+)="([^"]*)"', args))
    return labels


def _versions(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    return {canonicalize_name(e.name): (e.version, frozenset(e.hashes))
            for e in parse_lock(path.read_text(), path.name)}


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_base_image_is_a_build_argument_with_a_pinned_default(kind):
    image = base_image(DOCKERFILES[kind])
    name, _, tag = image.partition("@")[0].rpartition(":")
    assert name and tag and tag != "latest", image
    assert re.search(r"\d+\.\d+\.\d+", tag), f"{image}: pin a full version (or a digest)"
    # Fully qualified: podman resolves no short names without a registries.conf search list.
    assert name.split("/")[0] in ("docker.io", "ghcr.io", "nvcr.io"), image


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_base_python_matches_the_supported_range(kind):
    tag = base_image(DOCKERFILES[kind]).split(":", 1)[1]
    assert re.match(r"3\.(11|12)\.\d+-slim", tag), tag


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_multi_stage_build_installs_the_lock_hashed_then_the_package(kind):
    built = stages(DOCKERFILES[kind])
    assert list(built) == ["builder", "package", "final"]
    base_image(DOCKERFILES[kind])
    # builder: the venv and every dependency hash-checked from the image's lock, which is
    # all it copies (a source change reuses this layer).
    runs = [a for k, a in built["builder"] if k == "RUN"]
    assert any("python3 -m venv /opt/venv" in r for r in runs)
    # The one locked install (tests/test_lock.py runs it), and no other.
    installs = [c.strip() for r in runs for c in r.split("&&") if "install" in c]
    assert installs == [f"sh install_lock.sh /opt/venv/bin/python {LOCKS[kind]}"], installs
    copied = [a for k, a in built["builder"] if k == "COPY"]
    assert f"scripts/install_lock.sh scripts/check_lock.py docker/{LOCKS[kind]} ./" in copied
    assert not any("src" in a for a in copied)
    # package: the project's wheel from the sources, by the locked setuptools.
    copied = " ".join(a for k, a in built["package"] if k == "COPY")
    for needed in ("pyproject.toml", "README.md", "LICENSE", "src", "components", "pipelines"):
        assert needed in copied, needed
    (wheel,) = [a for k, a in built["package"] if k == "RUN"]
    assert re.search(r"pip wheel --no-cache-dir --no-deps --no-build-isolation "
                     r"--wheel-dir /wheels \.$", wheel), wheel
    # final: the builder's venv, then only the package unhashed, checked, and pip removed.
    copies = [a for k, a in built["final"] if k == "COPY"]
    check = ["--from=builder /opt/postergenre/check_cuda.py " + GPU_CHECK_SCRIPT]
    assert copies == ["--from=builder /opt/venv /opt/venv", *(check if kind == "gpu" else []),
                      "--from=package /wheels /opt/wheels"]
    commands = [c.strip() for k, a in built["final"] if k == "RUN" for c in a.split("&&")]
    pips = [c for c in commands if "pip install" in c]
    assert len(pips) == 1 and re.search(
        r"pip install --no-cache-dir --no-deps --no-index /opt/wheels/postergenre-\*\.whl$",
        pips[0]), pips
    assert any(c.endswith("-m pip check") for c in commands)
    assert any("import kfp, kfp.kubernetes, postergenre" in c for c in commands)
    assert commands.index("/opt/venv/bin/python -m pip uninstall --yes --quiet pip") > \
        commands.index(pips[0])


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_runs_as_non_root_with_writes_under_tmp_only(kind):
    final = stages(DOCKERFILES[kind])["final"]
    runs = [a for k, a in final if k == "RUN"]
    assert any("useradd --uid 10001 " in r for r in runs)
    users = [a for k, a in final if k == "USER"]
    assert users == ["10001:10001"]  # the UID pipelines/platform.py runs as
    # The USER comes after every RUN: nothing runs as root in the final image.
    user_at = next(i for i, (k, _) in enumerate(final) if k == "USER")
    assert all(k != "RUN" for k, _ in final[user_at:])
    env = env_of(final)
    for name in WRITABLE_ENV:
        assert env[name].startswith("/tmp"), name
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_oci_labels_come_last_from_build_arguments(kind):
    final = stages(DOCKERFILES[kind])["final"]
    labels = labels_of(final)
    for key in OCI_LABELS:
        assert f"org.opencontainers.image.{key}" in labels, key
    assert labels["org.opencontainers.image.title"] == {"cpu": "postergenre",
                                                        "gpu": "postergenre-gpu"}[kind]
    for key in ("revision", "version", "created", "source"):
        assert labels[f"org.opencontainers.image.{key}"] == f"${{{key.upper()}}}", key
    # After everything that makes a layer: a new commit or build time rebuilds none.
    first_label = next(i for i, (k, _) in enumerate(final) if k == "LABEL")
    assert all(k in ("ARG", "ENV", "LABEL") for k, _ in final[first_label:])


def test_gpu_image_checks_tensorflows_cuda_build_at_build_time():
    builder = stages(DOCKERFILES["gpu"])["builder"]
    runs = [a for k, a in builder if k == "RUN"]
    assert "/opt/venv/bin/python check_cuda.py" in runs
    check_at = runs.index("/opt/venv/bin/python check_cuda.py")
    assert "install_lock.sh" in runs[check_at - 1]


def test_gpu_lock_is_the_image_lock_plus_tensorflows_cuda_wheels():
    full, image, gpu = _versions(LOCK), _versions(IMAGE_LOCK), _versions(GPU_LOCK)
    assert set(image) <= set(gpu)
    extra = set(gpu) - set(image)
    cuda = {"nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12", "nvidia-cudnn-cu12",
            "nvidia-cufft-cu12", "nvidia-cusolver-cu12", "nvidia-cusparse-cu12",
            "nvidia-nccl-cu12", "nvidia-nvjitlink-cu12"}
    assert cuda <= extra and all(n.startswith("nvidia-") for n in extra), sorted(extra)
    # The same pins and hashes as requirements.lock for everything both hold.
    differ = [n for n in gpu if n in full and gpu[n] != full[n]]
    assert not differ, f"{GPU_LOCK.name} differs from requirements.lock for {differ}: make lock"
    assert gpu["tensorflow"] == full["tensorflow"]


def test_check_cuda_names_each_missing_cuda_wheel():
    """The GPU image's build-time check, here where TensorFlow has no CUDA wheels: it
    reports the CUDA build and fails naming what is missing."""
    run = subprocess.run([sys.executable, str(ROOT / "docker" / "check_cuda.py")],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "'is_cuda_build': True" in run.stdout
    assert "check_cuda: nvidia-cudnn-cu12 is not installed" in run.stderr


# A stand-in for the node's driver: cuDriverGetVersion answers the version it was built with.
FAKE_DRIVER = """
int cuDriverGetVersion(int *version) { *version = VERSION; return 0; }
"""


def _fake_driver(folder: Path, version: int) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to build a stand-in libcuda.so.1")
    folder.mkdir(parents=True)
    source = folder / "libcuda.c"
    source.write_text(FAKE_DRIVER)
    library = folder / "libcuda.so.1"
    subprocess.run(["gcc", "-shared", "-fPIC", f"-DVERSION={version}", "-o", str(library),
                    str(source)], check=True, capture_output=True)
    source.unlink()
    return library


def _check_driver(env_path: str) -> list:
    """check_cuda.check_driver() in a process whose LD_LIBRARY_PATH is `env_path` (the
    loader reads it when the process starts)."""
    run = subprocess.run(
        [sys.executable, "-c", "import json, check_cuda; "
         "print(json.dumps(check_cuda.check_driver()))"],
        cwd=ROOT / "docker", env={"LD_LIBRARY_PATH": env_path, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, check=True)
    return json.loads(run.stdout)


def test_gpu_image_finds_the_driver_where_gke_mounts_it(tmp_path):
    """GKE's device plugin mounts the node's driver at /usr/local/nvidia/lib64, outside the
    loader's folders: the GPU image's LD_LIBRARY_PATH holds it, and check_cuda loads
    libcuda.so.1 from there by its soname, as the CUDA runtime does. Here a stand-in
    driver sits under a temporary prefix in place of /."""
    env = env_of(stages(DOCKERFILES["gpu"])["final"])
    assert "/usr/local/nvidia/lib64" in env["LD_LIBRARY_PATH"].split(":")
    library = _fake_driver(tmp_path / "usr/local/nvidia/lib64", 12040)
    rooted = env["LD_LIBRARY_PATH"].replace("/usr/local/nvidia", f"{tmp_path}/usr/local/nvidia")
    assert _check_driver(rooted) == ["12.4", str(library)]
    supported, why = _check_driver("")
    assert supported is None and why.startswith("libcuda.so.1 does not load")
    sys.path.insert(0, str(ROOT / "docker"))
    try:
        import check_cuda
    finally:
        sys.path.remove(str(ROOT / "docker"))
    assert check_cuda.too_old("11.8", "12.5.82") and not check_cuda.too_old("12.2", "12.5.82")


def test_kfp_and_kfp_kubernetes_are_locked_to_one_version():
    full = _versions(LOCK)
    assert full["kfp"][0] == full["kfp-kubernetes"][0]


def test_dockerignore_sends_only_what_the_images_install():
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"  # everything out, then only these back in
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"docker/requirements-image.lock", "docker/requirements-gpu.lock",
                       "docker/check_cuda.py", "scripts/install_lock.sh", "scripts/check_lock.py",
                       "pyproject.toml",
                       "README.md", "LICENSE", "src", "components", "pipelines"}


def test_podman_settings_work_on_hybrid_cgroup_hosts():
    conf = (ROOT / "docker" / "containers.conf").read_text()
    assert re.search(r'^runtime = "runc"$', conf, re.M)
    assert re.search(r'^default_ulimits = \["nofile=\d+:\d+", "nproc=\d+:\d+"\]$', conf, re.M)


def test_every_subpackage_is_packaged():
    """The images install the wheel, not the checkout: a package folder that pyproject.toml
    does not list is missing there (an editable install hides it)."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    for package, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            name = ".".join((package, *parts))
            assert name in listed, f"pyproject.toml: {name} ({init.parent}) is not packaged"
