"""requirements.lock: every dependency pinned and hashed, complete, and installed by
scripts/install_lock.sh without resolving anything. The install tests run the real pip
(this venv's, and the oldest ones supported) offline, against local wheels made here."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import check_lock  # noqa: E402

from tests.helpers import IMAGE_LOCK, LOCK, parse_lock  # noqa: E402


def make_commands(*args: str) -> list[str]:
    """The commands `make -n` would run, variables expanded by make itself."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = subprocess.run(["make", "-n", "-C", str(ROOT), "--no-print-directory", *args],
                         capture_output=True, text=True, env=env, check=True, timeout=60)
    return [c.strip() for c in out.stdout.replace("\\\n", " ").splitlines() if c.strip()]


@pytest.mark.parametrize("lock", [LOCK, IMAGE_LOCK], ids=lambda p: p.name)
def test_every_requirement_is_pinned_exactly_and_hashed(lock):
    entries = parse_lock(lock.read_text(), lock.name)
    assert len(entries) > 100  # the whole tree, not just the direct dependencies
    unhashed = [f"line {e.line}: {e.name}" for e in entries if not e.hashes]
    assert not unhashed, f"{lock.name}: no --hash for {unhashed}"
    names = [canonicalize_name(e.name) for e in entries]
    twice = sorted({n for n in names if names.count(n) > 1})
    assert not twice, f"{lock.name} pins these more than once: {twice}"


def test_the_parser_rejects_what_pip_would_not_check():
    good = "six==1.17.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via x\n"
    assert parse_lock(good)[0].hashes == ("a" * 64,)
    for bad, why in [("six>=1.16 --hash=sha256:" + "a" * 64, "name==version"),
                     ("six==1.* --hash=sha256:" + "a" * 64, "name==version"),
                     ("six==1.17.0 --hash=md5:" + "a" * 32, "--hash=sha256"),
                     ("-e .", "name==version")]:
        try:
            parse_lock(bad)
        except AssertionError as err:
            assert why in str(err) and "line 1" in str(err), err
        else:
            raise AssertionError(f"accepted {bad!r}")


def test_the_lock_holds_every_dependency_of_pyproject_and_the_dev_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {canonicalize_name(e.name): e.version for e in parse_lock(LOCK.read_text())}
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    assert any(Requirement(r).name == "pytest" for r in wanted)  # the dev extra is read
    for spec in map(Requirement, wanted):
        name = canonicalize_name(spec.name)
        assert name in pinned, f"requirements.lock: {spec.name} (pyproject.toml) is missing"
        assert spec.specifier.contains(pinned[name], prereleases=True), (
            f"requirements.lock pins {spec.name}=={pinned[name]}, outside pyproject.toml's "
            f"{spec.specifier}: run make lock")


def test_the_image_lock_is_the_runtime_part_of_the_lock_with_the_same_hashes():
    full = {canonicalize_name(e.name): e for e in parse_lock(LOCK.read_text())}
    image = {canonicalize_name(e.name): e
             for e in parse_lock(IMAGE_LOCK.read_text(), IMAGE_LOCK.name)}
    differ = [n for n, e in image.items()
              if n not in full or (e.version, set(e.hashes)) != (full[n].version,
                                                                 set(full[n].hashes))]
    assert not differ, f"{IMAGE_LOCK.name} differs from requirements.lock for {differ}: make lock"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for name in (canonicalize_name(Requirement(r).name) for r in project["dependencies"]):
        assert name in image, f"{IMAGE_LOCK.name}: {name} (pyproject.toml) is missing"
    dev = [canonicalize_name(Requirement(r).name)
           for r in project["optional-dependencies"]["dev"]]
    assert not [n for n in dev if n in image], "the images get no dev tools"


def test_make_install_runs_the_one_locked_install_then_only_the_project():
    installs = [c for c in make_commands("-B", "install")
                if "pip install" in c or "install_lock" in c]
    assert len(installs) == 2, installs
    locked, project = installs
    assert re.fullmatch(r"scripts/install_lock\.sh \S+/\.venv/bin/python requirements\.lock "
                        r"--quiet", locked), locked
    # The project itself: no dependencies (they all came hashed above), no fetched builder.
    assert re.search(r"pip install .*--no-deps --no-build-isolation -e \.$", project), project
    assert not any("--upgrade" in c or " -c " in c for c in installs), installs


def test_make_lock_generates_hashes_with_a_pinned_resolver():
    commands = make_commands("lock")
    (tool,) = [c for c in commands if "pip install" in c]
    assert re.search(r"pip install --quiet uv==\d+\.\d+\.\d+$", tool), tool
    compiles = [c for c in commands if "uv pip compile" in c]
    assert [c.split("--output-file ")[1] for c in compiles] == [
        "requirements.lock", "docker/requirements-image.lock", "docker/requirements-gpu.lock"]
    for command in compiles:
        for flag in ("--generate-hashes", "--python-version 3.11", "--no-config"):
            assert flag in command, (flag, command)
    assert "--extra dev" in compiles[0]
    # The images' locks take their pins and hashes from the full one.
    for command in compiles[1:]:
        assert "--constraint requirements.lock" in command and "--extra" not in command


def _wheel(folder: Path, name: str, version: str) -> Path:
    """A valid pure-Python wheel for name==version that is not PyPI's file."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    files = {
        "tampered_marker.py": "TAMPERED = True\n",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                   "Tag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, content in files.items():
            zf.writestr(arcname, content)
        zf.writestr(f"{dist}.dist-info/RECORD",
                    "".join(f"{a},," + "\n" for a in [*files, f"{dist}.dist-info/RECORD"]))
    return path


def _pip_install_offline(requirements: Path, wheels: Path, target: Path):
    # No index and no pip configuration of this machine: only the wheel in `wheels`.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--require-hashes", "--no-index",
         "--find-links", str(wheels), "--target", str(target), "--no-compile",
         "--disable-pip-version-check", "-r", str(requirements)],
        capture_output=True, text=True, env=env, timeout=120)


def test_a_file_that_is_not_the_locked_one_is_refused(tmp_path):
    (six,) = [e for e in parse_lock(LOCK.read_text()) if canonicalize_name(e.name) == "six"]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = _wheel(wheels, six.name, six.version)
    own_hash = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert own_hash not in six.hashes

    # The lock's own entry for six, as `make install` reads it.
    locked = tmp_path / "locked.txt"
    locked.write_text(six.text + "\n")
    refused = _pip_install_offline(locked, wheels, tmp_path / "refused")
    assert refused.returncode != 0
    assert "do not match the hashes" in refused.stderr.lower(), refused.stderr
    assert not (tmp_path / "refused" / "tampered_marker.py").exists()

    # The same file is accepted once its hash is listed: the refusal above is the hash's.
    accepted = tmp_path / "accepted.txt"
    accepted.write_text(f"{six.text} --hash=sha256:{own_hash}\n")
    ok = _pip_install_offline(accepted, wheels, tmp_path / "accepted")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "accepted" / "tampered_marker.py").exists()


# --- the locked install, with the oldest pips it supports ------------------------------

INSTALL = ROOT / "scripts" / "install_lock.sh"
OLD_PIPS = Path(sys.prefix) / "old-pips"  # `make test` downloads tests/old-pips.txt here


def _dist(folder: Path, name: str, version: str, requires: tuple[str, ...] = (),
          extras: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel with the given requirements and extras."""
    dist = f"{name}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
            *(f"Provides-Extra: {e}" for e in extras), *(f"Requires-Dist: {r}" for r in requires)]
    files = {f"{name}_marker.py": f"VERSION = {version!r}\n",
             f"{dist}.dist-info/METADATA": "\n".join(meta) + "\n",
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
                                        "Root-Is-Purelib: true\nTag: py3-none-any\n"}
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, content in files.items():
            zf.writestr(arcname, content)
        zf.writestr(f"{dist}.dist-info/RECORD",
                    "".join(f"{a},,\n" for a in [*files, f"{dist}.dist-info/RECORD"]))
    return path


def _index_with_a_newer_release(folder: Path) -> dict[str, Path]:
    """The failure of 2026-12-06 in small: `app` requires `dep[extra]` (as
    google-cloud-bigquery requires google-auth[pyopenssl]); the lock pins dep 1.0, and the
    index also holds dep 1.1, released after the lock was written."""
    folder.mkdir()
    return {"app": _dist(folder, "app", "1.0", ("dep[extra]>=1.0",)),
            "dep": _dist(folder, "dep", "1.0", ('plugin; extra == "extra"',), ("extra",)),
            "dep-newer": _dist(folder, "dep", "1.1", ('plugin; extra == "extra"',), ("extra",)),
            "plugin": _dist(folder, "plugin", "1.0")}


def _lock(path: Path, wheels: list[Path]) -> Path:
    path.write_text("".join(
        f"{w.name.split('-')[0]}=={w.name.split('-')[1]} \\\n"
        f"    --hash=sha256:{hashlib.sha256(w.read_bytes()).hexdigest()}\n" for w in wheels))
    return path


def _venv_with_pip(folder: Path, version: str) -> Path:
    """A venv whose pip is `version`, installed offline from its wheel."""
    (wheel,) = OLD_PIPS.glob(f"pip-{version}-py3-none-any.whl") or [None]
    if wheel is None:
        pytest.fail(f"{OLD_PIPS}/pip-{version}-*.whl is missing: `make test` downloads it "
                    "(tests/old-pips.txt)")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    subprocess.run([str(python), f"{wheel}/pip", "install", "--quiet", "--no-index",
                    "--no-compile", str(wheel)], check=True, env=_offline_env(), timeout=300)
    return python


def _offline_env() -> dict[str, str]:
    # No pip configuration of this machine (its extra indexes and constraints), no network.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_NO_COMPILE="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _installed(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m, json; print("
                          "json.dumps({d.name: d.version for d in m.distributions()}))"],
                         capture_output=True, text=True, check=True)
    import json
    return json.loads(out.stdout)


@pytest.mark.parametrize("pip_version", ["23.0.1", "23.2.1"])
def test_the_locked_install_resolves_nothing_so_a_newer_release_cannot_break_it(
        tmp_path, pip_version):
    wheels = _index_with_a_newer_release(tmp_path / "index")
    lock = _lock(tmp_path / "app.lock", [wheels["app"], wheels["dep"], wheels["plugin"]])
    python = _venv_with_pip(tmp_path / "venv", pip_version)

    # What `make install` and the Dockerfiles ran until 2026-12-06 fails with this pip:
    # it resolves dep[extra] to the newest dep and refuses it as unpinned.
    resolving = subprocess.run(
        [str(python), "-m", "pip", "install", "--require-hashes", "--find-links",
         str(tmp_path / "index"), "-r", str(lock)],
        capture_output=True, text=True, env=_offline_env(), timeout=300)
    assert resolving.returncode != 0
    assert "must have their versions pinned" in resolving.stderr, resolving.stderr

    ours = subprocess.run([str(INSTALL), str(python), str(lock), "--find-links",
                           str(tmp_path / "index")],
                          capture_output=True, text=True, env=_offline_env(), timeout=300)
    assert ours.returncode == 0, ours.stdout + ours.stderr
    installed = {canonicalize_name(n): v for n, v in _installed(python).items()}
    assert {n: installed.get(n) for n in ("app", "dep", "plugin")} == {
        "app": "1.0", "dep": "1.0", "plugin": "1.0"}


def test_the_locked_install_fails_naming_an_incomplete_lock(tmp_path):
    wheels = _index_with_a_newer_release(tmp_path / "index")
    # plugin, which dep[extra] needs, is not in the lock.
    lock = _lock(tmp_path / "app.lock", [wheels["app"], wheels["dep"]])
    python = _venv_with_pip(tmp_path / "venv", "23.2.1")
    run = subprocess.run([str(INSTALL), str(python), str(lock), "--find-links",
                          str(tmp_path / "index")],
                         capture_output=True, text=True, env=_offline_env(), timeout=300)
    assert run.returncode == 1
    # pip check is content (an extra's requirement is not its concern); check_lock is not.
    assert "No broken requirements found" in run.stderr
    assert f"{lock}: plugin, which dep[extra] requires, is not locked" in run.stderr, run.stderr
    assert f"{lock} is incomplete" in run.stderr


def test_every_install_of_a_lock_is_the_one_locked_install():
    """The Makefile and both Dockerfiles install their locks through scripts/install_lock.sh,
    nowhere with a resolving `pip install -r`."""
    users = {"Makefile": "requirements.lock",
             "docker/Dockerfile.cpu": "requirements-image.lock",
             "docker/Dockerfile.gpu": "requirements-gpu.lock"}
    for file, lock in users.items():
        text = (ROOT / file).read_text()
        assert re.search(rf"install_lock\.sh \S+/python \S*{re.escape(lock)}\b", text), file
        assert not re.search(r"pip install[^\n]* -r ", text), f"{file}: a resolving install"


@pytest.mark.parametrize("lock,extras", [(LOCK, ["dev"]), (IMAGE_LOCK, [])],
                         ids=lambda v: v.name if isinstance(v, Path) else None)
def test_the_locks_are_complete_so_no_deps_is_safe(lock, extras):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    roots = project["dependencies"] + [r for e in extras
                                       for r in project["optional-dependencies"][e]]
    assert not check_lock.gaps(check_lock.pins(lock.read_text()), roots)


def test_the_completeness_check_sees_a_missing_extra(tmp_path):
    """The check above can fail: a lock without what an extra requires."""
    entries = parse_lock(IMAGE_LOCK.read_text(), IMAGE_LOCK.name)
    dropped = "dvc-s3"  # only dvc[s3] (pyproject.toml) asks for it
    cut = tmp_path / "cut.lock"
    cut.write_text("\n".join(e.text for e in entries if canonicalize_name(e.name) != dropped))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    problems = check_lock.gaps(check_lock.pins(cut.read_text()), project["dependencies"])
    (problem,) = problems
    assert problem.startswith("dvc-s3") and problem.endswith(
        ", which dvc[s3] requires, is not locked"), problem
