"""requirements.lock: every dependency pinned and hashed, and `make install` installing it
in pip's hash-checking mode. The tampered-file test runs the real pip offline, against a
local wheel that is not the file PyPI serves, with the lock's own entry for that package."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
IMAGE_LOCK = ROOT / "docker" / "requirements-image.lock"  # the images' subset
SHA256 = re.compile(r"--hash=sha256:([0-9a-f]{64})$")


@dataclass(frozen=True)
class Entry:
    line: int  # 1-based, where the requirement starts
    text: str  # the requirement with its continuation lines joined
    name: str
    version: str
    hashes: tuple[str, ...]


def parse_lock(text: str, source: str = "requirements.lock") -> list[Entry]:
    """The requirements of a pip requirements file, continuation lines joined, comments
    dropped; raises naming the line when one is not `name==version --hash=sha256:...`."""
    logical: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = number
        pending += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            logical.append((start, pending.strip()))
            pending = ""
    assert not pending, f"{source} line {start}: continuation never ends"
    entries = []
    for number, line in logical:
        requirement, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", requirement)
        assert match, f"{source} line {number}: {requirement!r} is not name==version"
        hashes = [SHA256.match(o) for o in options]
        bad = [o for o, h in zip(options, hashes, strict=True) if not h]
        assert not bad, f"{source} line {number}: {bad} is not --hash=sha256:<64 hex>"
        entries.append(Entry(number, line, match.group(1), match.group(2),
                             tuple(h.group(1) for h in hashes if h)))
    return entries


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


def test_make_install_uses_hash_checking_and_installs_only_the_project_unhashed():
    installs = [c for c in make_commands("-B", "install") if "pip install" in c]
    assert len(installs) == 2, installs
    locked, project = installs
    assert re.search(r"pip install .*--require-hashes -r requirements\.lock$", locked), locked
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
