"""The dvc source: materialise one data version (labels.csv + posters/) from a DVC remote.

A version is either the md5 that `data.dvc` records (`<32 hex>.dir`, with or without
`.dir`) or a git revision of a repository whose `data.dvc` names it. The data is pulled
with the real DVC CLI into a throwaway DVC project (no git needed) that holds a
one-output `data.dvc` and the remote's URL and endpoint, then moved into the folder
that replaces `out_dir` (outdir.building).
DVC checks every file's md5 as it pulls, so what lands is that version, byte for byte.

Credentials: none pass through here. DVC's S3 client (boto) reads them from the
environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) or the
AWS profile (`AWS_PROFILE`), which is why they never enter a config file or a command.
An S3-compatible endpoint (MinIO, Ceph) is `endpoint_url`, else `AWS_ENDPOINT_URL`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from postergenre.configs import DvcSourceConfig
from postergenre.data.labels import LABELS_FILE, read_labels
from postergenre.sources.outdir import building, check_dataset_dir

_MD5 = re.compile(r"^[0-9a-f]{32}(\.dir)?$")
DATA_DVC = "data.dvc"


class DvcError(ValueError):
    """A DVC command that failed (a ValueError, so the CLI prints it as one line)."""


def _run(args: list[str], cwd: Path, what: str) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise DvcError(f"{what} failed: {' '.join(args[:4])}...: " + " | ".join(detail))
    return done.stdout


def _dvc(*args: str) -> list[str]:
    # The DVC of this interpreter's environment, not whichever `dvc` is first on PATH.
    return [sys.executable, "-m", "dvc", *args]


def resolve_version(version: str, repo: str | os.PathLike[str]) -> dict:
    """The `data.dvc` output entry (md5, hash, ...) for an md5 or a git revision of `repo`."""
    version = version.strip()
    if not version:
        raise ValueError("the dvc source needs a data version (--data-version): the md5 in "
                         "data.dvc or a git revision")
    if _MD5.match(version):
        md5 = version if version.endswith(".dir") else f"{version}.dir"
        return {"md5": md5, "hash": "md5", "path": "data"}
    try:
        text = _run(["git", "show", f"{version}:{DATA_DVC}"], Path(repo),
                    f"reading {DATA_DVC} at git revision {version!r} in {repo}")
    except OSError:  # no git, or no such folder: a Kubeflow task has neither
        raise ValueError(f"data version {version!r} is no md5, and a git revision needs git "
                         f"and a checkout at ingest.dvc.repo ({repo!r}); pass the md5 in "
                         f"data.dvc instead (`git show {version}:{DATA_DVC}`)") from None
    outs = (yaml.safe_load(text) or {}).get("outs") or []
    if len(outs) != 1 or "md5" not in outs[0]:
        raise ValueError(f"{DATA_DVC} at {version!r} does not hold one output with an md5")
    return {**outs[0], "path": "data"}


def materialise(version: str, out_dir: str | os.PathLike[str],
                config: DvcSourceConfig) -> dict:
    """Pull data version `version` from `config.remote_url` into `out_dir` (replaced as a
    whole once the pull is complete)."""
    if not config.remote_url:
        raise ValueError("the dvc source needs a remote: set ingest.dvc.remote_url "
                         "(--dvc-remote-url), e.g. s3://bucket/path")
    endpoint_url = config.endpoint_url or os.environ.get("AWS_ENDPOINT_URL", "")
    entry = resolve_version(version, config.repo)
    out = Path(out_dir).resolve()
    check_dataset_dir(out)  # before the pull, which can take long, not only after it
    with tempfile.TemporaryDirectory(prefix="postergenre-dvc-") as work_dir, \
            building(out) as tmp:
        work = Path(work_dir)
        _run(_dvc("init", "--no-scm", "-q"), work, "dvc init")
        _run(_dvc("remote", "add", "-d", "storage", config.remote_url), work,
             "dvc remote add")
        if endpoint_url:
            _run(_dvc("remote", "modify", "storage", "endpointurl", endpoint_url), work,
                 "dvc remote modify")
        (work / DATA_DVC).write_text(yaml.safe_dump({"outs": [entry]}, sort_keys=False))
        _run(_dvc("pull", "-q", DATA_DVC), work,
             f"dvc pull of data version {entry['md5']} from {config.remote_url}")
        pulled = work / "data"
        if not (pulled / LABELS_FILE).is_file():
            raise ValueError(f"data version {entry['md5']} holds no {LABELS_FILE}")
        for child in pulled.iterdir():  # a copy across file systems, a rename otherwise
            shutil.move(child, tmp / child.name)
    n = len(read_labels(out))
    return {"source": "dvc", "out_dir": str(out), "version": version, "md5": entry["md5"],
            "remote": config.remote_url, "n_posters": n}
