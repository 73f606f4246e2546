"""Lineage: where an artifact came from, as four strings that every Kubeflow output
artifact and every registry entry carry (the same under DVC and under Kubeflow).

- `data_version`: the data set's version, the md5 DVC records in `data.dvc` (on Kubeflow
  the run's `data_version` parameter; under DVC read from `data.dvc`).
- `git_commit`: the commit of the checkout that compiled the pipeline (Kubeflow) or runs
  the stage (DVC), from `git rev-parse HEAD`; `-dirty` is appended when tracked files
  differ from it, so an uncommitted edit is never passed off as the commit.
- `params_hash`: 16 hex digits of the sha256 of the params the task used, as canonical
  JSON, keyed by section (`{"gate": {...}}`, `{"models": {"scratch_cnn": {...}}}`).
  Typed configs are hashed with every default filled in, so a params file that spells a
  default out hashes the same as one that leaves it implicit.
- `image`: the container image the task ran in; `local` outside a container (the CLI
  under DVC, kfp.local's subprocess runner).

On Kubeflow the image and the commit reach the task through pod annotations that the
Downward API turns into POSTERGENRE_IMAGE / POSTERGENRE_GIT_COMMIT (pipelines/platform.py):
annotations are not part of KFP's cache key (environment variables are, on newer
backends), so a new commit does not rerun a cached step, whose artifacts keep the
commit they were made at.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

IMAGE_ENV = "POSTERGENRE_IMAGE"
GIT_COMMIT_ENV = "POSTERGENRE_GIT_COMMIT"
LOCAL_IMAGE = "local"
# The metadata keys every output artifact carries, in this order.
LINEAGE_KEYS = ("data_version", "git_commit", "params_hash", "image")
PARAMS_HASH_DIGITS = 16


@dataclasses.dataclass(frozen=True)
class Lineage:
    """Where an artifact came from (see the module doc for each field)."""

    data_version: str
    git_commit: str
    params_hash: str
    image: str

    def as_metadata(self) -> dict[str, str]:
        """The four fields as artifact metadata / registry entry values."""
        return {key: getattr(self, key) for key in LINEAGE_KEYS}


def _plain(value: Any) -> Any:
    """A config as JSON values: ModelSpecs as their params entry, dataclasses with every
    field, mappings and sequences element by element."""
    if hasattr(value, "as_entry") and dataclasses.is_dataclass(value):
        return _plain(value.as_entry())  # type: ignore[union-attr]  # a ModelSpec
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        from postergenre.typed_config import to_mapping

        return _plain(to_mapping(value))
    if isinstance(value, Mapping):
        return {str(key): _plain(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(inner) for inner in value]
    return value


def params_hash(sections: Mapping[str, Any]) -> str:
    """A stable hash of the params a task used: {section name: its values} (a typed
    config, a ModelSpec or plain values); key order and tuple/list do not matter."""
    text = json.dumps(_plain(sections), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:PARAMS_HASH_DIGITS]


def git_commit(repo: str | os.PathLike[str] = ".") -> str:
    """HEAD's commit of the git checkout at `repo` (`<sha>-dirty` when tracked files
    differ from it); "" when git or the checkout is absent (a container)."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                              check=False, timeout=30)

    try:
        head = git("rev-parse", "--verify", "-q", "HEAD")
        if head.returncode != 0:
            return ""
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):  # no git binary, no such folder
        return ""
    commit = head.stdout.strip()
    return f"{commit}-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else commit


def code_commit(environ: Mapping[str, str] | None = None) -> tuple[str, int | None]:
    """The commit of the code that runs and that commit's time (unix seconds): the last
    commit that changed this package's folder (src/postergenre, what dvc.yaml's stages
    depend on), `<sha>-dirty` when the folder differs from it. Unlike `git_commit`
    (HEAD), it stays the same over commits that change no code (a committed dvc.lock),
    so a page that names it is the same bytes on a rerun at any of them. Outside a git
    checkout (an image): the commit the pipeline compiled in (POSTERGENRE_GIT_COMMIT)
    and no time; ("", None) when neither is known."""
    environ = os.environ if environ is None else environ
    package = Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=package, capture_output=True, text=True,
                              check=False, timeout=30)

    try:
        last = git("log", "-1", "--format=%H %ct", "--", ".")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    except (OSError, subprocess.SubprocessError):  # no git binary
        last = None
    if last is None or last.returncode != 0 or not last.stdout.strip():
        return environ.get(GIT_COMMIT_ENV) or "", None
    commit, when = last.stdout.split()
    if dirty.returncode == 0 and dirty.stdout.strip():
        commit += "-dirty"
    return commit, int(when)


def task_lineage(data_version: str, sections: Mapping[str, Any],
                 environ: Mapping[str, str] | None = None) -> Lineage:
    """A Kubeflow task's lineage: the image and commit the pipeline compiled in (pod
    annotations read back as environment variables), else `local` and the commit of the
    checkout the task runs in (kfp.local)."""
    environ = os.environ if environ is None else environ
    return Lineage(data_version=data_version or "",
                   git_commit=environ.get(GIT_COMMIT_ENV) or git_commit(),
                   params_hash=params_hash(sections),
                   image=environ.get(IMAGE_ENV) or LOCAL_IMAGE)


def local_lineage(sections: Mapping[str, Any], data_version: str | None = None,
                  dvc_file: str | os.PathLike[str] = "data.dvc",
                  repo: str | os.PathLike[str] = ".") -> Lineage:
    """The lineage of a stage run by the CLI (under DVC): `data_version`, else the one
    `dvc_file` gives (`serving.registry.data_version_of`); the commit of `repo`, else (a
    DVC project outside git, as `make real` makes) of the checkout the package runs from;
    image `local`."""
    from postergenre.serving.registry import data_version_of

    commit = git_commit(repo) or git_commit(Path(__file__).resolve().parent)
    return Lineage(data_version=data_version or data_version_of(dvc_file) or "",
                   git_commit=commit, params_hash=params_hash(sections),
                   image=LOCAL_IMAGE)


def lineage_of(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The lineage fields an artifact's metadata (or a registry entry) holds."""
    return {key: str(metadata[key]) for key in LINEAGE_KEYS if key in metadata}


def local_model_lineages(names: list[str] | Mapping[str, Any], params: Mapping[str, Any],
                         data_version: str | None = None,
                         dvc_file: str | os.PathLike[str] = "data.dvc") -> dict[str, dict]:
    """{model name: lineage} for models trained by the CLI under DVC: each model's
    params hash covers its resolved `models` entry in the run's `params` (as the training
    task's does on Kubeflow); a model the params do not name gets an empty params hash
    (unknown)."""
    from postergenre.configs import MODELS_SECTION, model_spec

    models = params.get(MODELS_SECTION)
    models = models if isinstance(models, Mapping) else {}
    out = {}
    for name in names:
        lineage = local_lineage({MODELS_SECTION: {name: model_spec(name, models.get(name))}}
                                if name in models else {}, data_version, dvc_file)
        if name not in models:
            lineage = dataclasses.replace(lineage, params_hash="")
        out[name] = lineage.as_metadata()
    return out


def stamp(lineage: Lineage | Mapping[str, str], *artifacts: Any) -> None:
    """Write the lineage into the metadata of each (KFP) artifact, where the Kubeflow UI
    shows it in the artifact's side panel and ML Metadata keeps it."""
    values = lineage.as_metadata() if isinstance(lineage, Lineage) else dict(lineage)
    for artifact in artifacts:
        artifact.metadata.update(values)
