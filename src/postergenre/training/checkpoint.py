"""Resumable training: the state after a run's last finished epoch, kept in one folder.

A checkpoint folder (by default `<model folder>.checkpoint`, beside the output) holds
`state.json` and the weights files it names:

- `state.json`: the checkpoint version, the run's fingerprint (and what it was made of),
  the phase being trained (`fit`; `head` / `fine_tune` for a fine-tuned transfer model),
  the epochs finished in it and whether the phase ended (early stopping or its last
  epoch), the history of every finished epoch of every phase, the best validation loss
  so far, and the early-stopping and plateau-schedule counters;
- `<phase>-last-eNNNN.weights.h5`: the model's weights and its optimizer's state (step
  count, moments, learning rate) after the last finished epoch;
- `<phase>-best-eNNNN.npz`: the weights of the best epoch so far (what the model keeps).

Every epoch writes its files under new names first and `state.json` last (atomically),
then deletes the files the new state no longer names: a kill at any moment leaves the
previous epoch's consistent set or the new one.

The fingerprint covers the model's settings, its name and kind, the bytes of the shards
it trains and validates on (and their manifest), the replicas and precision (mixed
precision wraps the optimizer) and the Keras version. A checkpoint made with anything
else is ignored with a log line and replaced; an unreadable one too.

The folder may also be a remote URL (`s3://...`; credentials as `storage` reads them):
the checkpoint is then written to a local working folder and mirrored there after each
epoch (files first, `state.json` last), and read back from it at the start (the local
copy is used only when the remote has none): that is how a retried Kubeflow task, a
fresh pod with the same output URI, resumes.
A remote that cannot be reached never stops training: it is logged and training goes on.

Why not Keras' `BackupAndRestore`: it resumes from whatever its folder holds (no
fingerprint, so a changed setting or data set would resume a stale run), keeps no
best-epoch weights or early-stopping and plateau counters across phases, and writes only
where Keras' own file layer reaches (not `s3://` through the project's credentials).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from postergenre.atomic import file_mode, folder_mode, write_json
from postergenre.data.storage import is_remote, remote_fs

log = logging.getLogger(__name__)
CHECKPOINT_VERSION = 1
STATE_FILE = "state.json"
CHECKPOINT_SUFFIX = ".checkpoint"


def default_checkpoint_dir(model_dir: str | os.PathLike[str]) -> Path:
    """`<model_dir>.checkpoint`: beside the output, on the same filesystem."""
    model_dir = Path(model_dir)
    return model_dir.with_name(model_dir.name + CHECKPOINT_SUFFIX)


def checkpoint_for_output(output_uri: str) -> str | None:
    """The checkpoint location for a task whose output artifact has `output_uri`:
    `<output_uri>.checkpoint` when that is an s3:// URL (it outlives the pod, and a retry
    of the task has the same output URI), else None (the default, beside the local
    output folder)."""
    uri = str(output_uri).rstrip("/")
    return f"{uri}{CHECKPOINT_SUFFIX}" if uri.startswith("s3://") else None


def data_fingerprint(prepared_dir: str | os.PathLike[str],
                     splits: Iterable[str] = ("train", "validation")) -> str:
    """sha256 of the manifest and of every shard of `splits`, names and bytes (a few
    seconds for gigabytes, against hours of training on the wrong data)."""
    prepared_dir = Path(prepared_dir)
    manifest_bytes = (prepared_dir / "manifest.json").read_bytes()
    digest = hashlib.sha256(manifest_bytes)
    shards = json.loads(manifest_bytes).get("shards", {})
    for split in splits:
        for name in shards.get(split, []):
            digest.update(f"\0{split}/{name}\0".encode())
            with open(prepared_dir / name, "rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def _digest(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ (for the log line of an ignored checkpoint)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(saved) | set(current), key=str):
            found += _differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return found
    return [] if saved == current else [prefix.rstrip(".") or "(all)"]


class Checkpoint:
    """One training run's checkpoint folder (see the module doc)."""

    def __init__(self, location: str | os.PathLike[str], parts: dict,
                 local_dir: str | os.PathLike[str] | None = None) -> None:
        """`location`: the checkpoint folder, or a remote URL mirrored from `local_dir`
        (required then: the working copy, e.g. `default_checkpoint_dir(model_dir)`).
        `parts`: what the run's fingerprint is made of (JSON-able)."""
        self.remote = str(location).rstrip("/") if is_remote(location) else None
        if self.remote is not None and local_dir is None:
            raise ValueError(f"checkpoint {location}: a remote checkpoint needs a local "
                             "working folder")
        self.folder = Path(local_dir if local_dir is not None and self.remote is not None
                           else location)
        self.parts = json.loads(json.dumps(parts, default=str))
        self.fingerprint = _digest(self.parts)
        self.state: dict | None = None
        self._mirrored: set[str] = set()  # files this process has put on the remote

    def __repr__(self) -> str:
        return f"Checkpoint({self.remote or self.folder})"

    @property
    def where(self) -> str:
        return self.remote or str(self.folder)

    # --- reading ------------------------------------------------------------------

    def _read_local(self) -> dict | None:
        path = self.folder / STATE_FILE
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
            missing = [name for name in self._files(state)
                       if not (self.folder / name).is_file()]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
        except (OSError, ValueError) as err:
            log.warning("checkpoint %s is unreadable (%s): ignored, training starts over",
                        path, err)
            return None
        return state

    def _fetch_remote(self) -> None:
        """Replace the local working copy with the remote checkpoint when there is one:
        the remote is what a retry in a fresh pod sees, and a local copy may be another
        run's."""
        if self.remote is None:
            return
        try:
            fs, root = remote_fs(self.remote)
            if not fs.exists(f"{root}/{STATE_FILE}"):
                return
            state = json.loads(fs.cat_file(f"{root}/{STATE_FILE}"))
            self._reset_local()
            for name in self._files(state):
                fs.get_file(f"{root}/{name}", str(self.folder / name))
            write_json(self.folder / STATE_FILE, state)
            self._mirrored = set(self._files(state))
            log.info("checkpoint: fetched %s (%d files)", self.remote,
                     len(self._files(state)) + 1)
        except Exception as err:  # noqa: BLE001 - a remote never stops training
            log.warning("checkpoint %s cannot be read (%s): training starts over",
                        self.remote, err)
            self._reset_local()

    def load(self) -> dict | None:
        """The saved state when it was made by a run like this one; else None, and a
        checkpoint of another run is deleted (with a log line saying what differs)."""
        self._fetch_remote()
        state = self._read_local()
        if state is None:
            self.remove()  # a checkpoint without a readable state.json is of no use
            return None
        if state.get("version") != CHECKPOINT_VERSION or \
                state.get("fingerprint") != self.fingerprint:
            differing = _differences(state.get("made_of"), self.parts)
            log.warning("checkpoint %s was made with other settings or data (%s differ): "
                        "ignored, training starts at epoch 1", self.where,
                        ", ".join(differing) or "format version")
            self.remove()
            return None
        self.state = state
        return state

    # --- writing ------------------------------------------------------------------

    @staticmethod
    def _files(state: dict) -> list[str]:
        names = state.get("files", [])
        if not isinstance(names, list) or not all(isinstance(n, str) and "/" not in n
                                                 and not n.startswith(".") for n in names):
            raise ValueError("state.json: 'files' must list plain file names")
        return names

    def _reset_local(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True, mode=folder_mode())

    def new_file(self, name: str) -> Path:
        """A path in the folder to write a new file at (under a name no state uses yet:
        write it, then `commit` a state that names it)."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=folder_mode())
        return self.folder / name

    def commit(self, state: dict) -> None:
        """Make `state` (naming its files in `state["files"]`, already written) the
        checkpoint: state.json last, then the files no state names are deleted."""
        state = {"version": CHECKPOINT_VERSION, "fingerprint": self.fingerprint,
                 "made_of": self.parts, **state}
        files = self._files(state)
        for name in files:
            path = self.folder / name
            path.chmod(file_mode())
            with open(path, "rb") as handle:  # on disk before state.json names it
                os.fsync(handle.fileno())
        write_json(self.folder / STATE_FILE, state)
        for stale in self.folder.iterdir():
            if stale.name != STATE_FILE and stale.name not in files:
                stale.unlink(missing_ok=True)
        self.state = state
        self._mirror(files)

    def _mirror(self, files: list[str]) -> None:
        if self.remote is None:
            return
        try:
            fs, root = remote_fs(self.remote)
            # A file of the same name a killed run uploaded may hold other bytes: every
            # file this process has not put itself goes up.
            for name in files:
                if name not in self._mirrored:
                    fs.put_file(str(self.folder / name), f"{root}/{name}")
                    self._mirrored.add(name)
            fs.put_file(str(self.folder / STATE_FILE), f"{root}/{STATE_FILE}")
            present = {Path(p).name for p in fs.ls(root, detail=False)}
            for name in present - {*files, STATE_FILE}:
                fs.rm_file(f"{root}/{name}")
            self._mirrored &= set(files)
        except Exception as err:  # noqa: BLE001 - a remote never stops training
            log.warning("checkpoint: cannot mirror to %s (%s); training goes on, a retry "
                        "may have to start over", self.remote, err)

    def remove(self) -> None:
        """Delete the checkpoint (local and remote): the run it belongs to is done."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.state = None
        self._mirrored = set()
        if self.remote is None:
            return
        try:
            fs, root = remote_fs(self.remote)
            if fs.exists(root):
                fs.rm(root, recursive=True)
        except Exception as err:  # noqa: BLE001
            log.warning("checkpoint: cannot delete %s (%s)", self.remote, err)

