"""DVC on S3: push the data set to a real S3-compatible server on loopback (moto in
server mode), pull it into a fresh clone, and materialise versions with the dvc source."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from postergenre.configs import DemoSourceConfig, DvcSourceConfig, IngestConfig
from postergenre.sources.demo import generate_demo
from postergenre.sources.ingest import ingest
from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent
BUCKET = "postergenre-test"


@pytest.fixture()
def s3(moto_s3):
    """moto S3 on loopback with one bucket; yields its endpoint."""
    endpoint, client = moto_s3
    client.create_bucket(Bucket=BUCKET)
    return endpoint


def _run(args, cwd, env=None):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com", **(env or {})}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(map(str, args))}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _same_tree(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and files_a
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(p) for p in files_a], shallow=False)
    assert mismatch == [] and errors == []


@pytest.mark.slow
def test_push_pull_round_trip_and_dvc_source(s3, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _run(["git", "init", "-q"], repo)
    _run(["dvc", "init", "-q"], repo)
    generate_demo(repo / "data", DemoSourceConfig(n_posters=12, width=48, height=72))
    _run(["git", "add", ".dvc", ".dvcignore"], repo)
    _run(["git", "commit", "-qm", "dvc"], repo)

    # The documented script: dvc add, push, a fresh clone, pull, compare.
    remote = f"s3://{BUCKET}/store"
    out = _run([str(REPO_ROOT / "scripts" / "dvc_s3_roundtrip.sh"), "data"], repo,
               {"DVC_REMOTE_URL": remote, "DVC_REMOTE_ENDPOINT_URL": s3})
    assert "round trip OK: 13 files identical" in out
    # The endpoint and URL went to the uncommitted local config; no credential anywhere.
    assert "endpointurl" in (repo / ".dvc" / "config.local").read_text()
    for path in repo.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            assert b"testing" not in path.read_bytes(), path

    _run(["git", "add", "data.dvc", ".gitignore"], repo)
    _run(["git", "commit", "-qm", "data version"], repo)
    md5 = next(line.split()[-1] for line in (repo / "data.dvc").read_text().splitlines()
               if "md5:" in line)

    # The dvc source, by md5 and by git revision, into folders of a different machine.
    config = IngestConfig(dvc=DvcSourceConfig(remote_url=remote, endpoint_url=s3))
    by_md5 = ingest("dvc", tmp_path / "by-md5", config, data_version=md5.removesuffix(".dir"))
    assert by_md5["n_posters"] == 12
    _same_tree(repo / "data", tmp_path / "by-md5")
    by_rev = IngestConfig(dvc=DvcSourceConfig(remote_url=remote, endpoint_url=s3,
                                              repo=str(repo)))
    ingest("dvc", tmp_path / "by-rev", by_rev, data_version="HEAD")
    _same_tree(repo / "data", tmp_path / "by-rev")
    # A second version into the same folder replaces it whole, leaving no temp folder.
    ingest("dvc", tmp_path / "by-rev", by_rev, data_version=md5)
    _same_tree(repo / "data", tmp_path / "by-rev")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".by-rev")] == []

    # No endpoint in the config: AWS_ENDPOINT_URL (set by moto_s3) is the S3 endpoint.
    from_env = IngestConfig(dvc=DvcSourceConfig(remote_url=remote))
    ingest("dvc", tmp_path / "from-env", from_env, data_version=md5)
    _same_tree(repo / "data", tmp_path / "from-env")

    with pytest.raises(ValueError, match="dvc pull of data version"):
        ingest("dvc", tmp_path / "absent", config, data_version="0" * 32)
    assert not (tmp_path / "absent").exists()
    with pytest.raises(ValueError, match=r"set ingest\.dvc\.remote_url"):
        ingest("dvc", tmp_path / "absent", data_version=md5)
    with pytest.raises(ValueError, match="needs a data version"):
        ingest("dvc", tmp_path / "absent", config)


@pytest.mark.slow
def test_ingest_task_pulls_a_data_version_from_s3_with_the_pods_credentials(s3, tmp_path,
                                                                              monkeypatch):
    """The cluster's way in for posters: the ingest component (as the pod runs it) pulls
    the data version from the DVC remote on S3, with the S3 Secret under the project's
    names (POSTERGENRE_AWS_*, as platform.py injects them) and no AWS_* of its own."""
    from kfp import dsl

    from postergenre.components import ingest as component
    from postergenre.sources.dvc import resolve_version

    project = tmp_path / "project"
    project.mkdir()
    generate_demo(project / "data", DemoSourceConfig(n_posters=12, width=48, height=72))
    remote = f"s3://{BUCKET}/cluster"
    for args in (["init", "--no-scm", "-q"], ["remote", "add", "-d", "s3", remote],
                 ["remote", "modify", "s3", "endpointurl", s3], ["add", "-q", "data"],
                 ["push", "-q"]):
        _run([sys.executable, "-m", "dvc", *args], project)
    md5 = next(line.split()[-1] for line in (project / "data.dvc").read_text().splitlines()
               if "md5:" in line)
    for name in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "ENDPOINT_URL"):
        monkeypatch.setenv(f"POSTERGENRE_AWS_{name}", os.environ[f"AWS_{name}"])
        monkeypatch.delenv(f"AWS_{name}")
    dataset = dsl.Dataset(uri=str(tmp_path / "dataset"), metadata={})
    report = dsl.Artifact(uri=str(tmp_path / "report.json"), metadata={})
    component.ingest(dataset, report, config={"dvc": {"remote_url": remote}}, source="dvc",
                     data_version=md5)
    _same_tree(project / "data", tmp_path / "dataset")
    assert dataset.metadata["md5"] == md5 and dataset.metadata["data_version"] == md5
    assert dataset.metadata["posters"] == 12
    # A git revision needs git and a checkout, which a pod has not: one clear line.
    with pytest.raises(ValueError, match="pass the md5 in data.dvc instead"):
        resolve_version("HEAD", tmp_path / "no-checkout-here")
