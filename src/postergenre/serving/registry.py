"""The model registry: write-once, content-addressed, verified entries and a `latest` pointer.

Only a blessed model is registered. An entry is `<model>-<hash>/` holding `model/` (the
trained model folder), `thresholds.json` (the decision thresholds chosen on validation)
and `entry.json` (the blessing, the data version and whether that data was the demo's,
metrics, the model's lineage (`postergenre.lineage`: data version, git commit, params
hash, image; the first registration's, as the entry's name does not cover it), and the
sha256 of every other file of the entry). An earlier entry is never
overwritten, and `latest.json` is replaced only after its entry is complete, so it always
points at a whole model.

Naming: `<hash>` covers the model's files, the thresholds and the data version. The same
model registered again with another data version (or other thresholds) is a new entry,
not the old one with a `latest.json` that disagrees with its `entry.json`; the same
model, thresholds and data version again reuse the entry (idempotent). `latest.json` is
always written from the entry's own `entry.json`, so the two agree by construction.

Verification on read: `fetch_latest`, `verify_entry` (predict, batch_predict) hash every
file of an entry and compare with `entry.json`; a changed, missing or added file (a
swapped model.keras, a lost thresholds.json) is refused with `RegistryIntegrityError`
naming the entry and the file. Whatever is not a regular file (a symlink, a FIFO, a
socket) is never followed nor opened, and is refused as added (or as changed, in place
of a registered file). An entry registered before hashes were recorded is refused too
(register it again). Serving (`require_thresholds`) also needs the entry's thresholds:
an entry without them is an error, never a silent 0.5. `latest.json` must be a JSON
object whose `entry` is an entry's name (`<model>-<hex>`, one folder of the
registry): anything else (`../elsewhere/<entry>`, a file that is not JSON) is refused,
naming latest.json.

The registry is a local folder or an `s3://bucket/prefix` URI (through fsspec / s3fs;
endpoint and credentials from the environment, as boto reads them):
- local: the entry is staged in a hidden sibling folder `.<entry>.staging.<pid>.<host>.*`
  and renamed into place (atomic). Two concurrent registers of the same entry both
  succeed (the second finds the entry complete and verified, and uses it); of different
  entries, both succeed and `latest.json` names the one that finished last. A killed
  register leaves its staging folder behind: the next register removes it (its process
  is gone, or it is older than `STALE_STAGING_SECONDS` when it came from another host).
- S3 has no rename: the entry's files are uploaded first and `entry.json` last, so an
  entry without `entry.json` is incomplete and never read; `latest.json` is one PUT,
  which S3 applies atomically.

Aliases and history (the verbs of `postergenre registry`: list, show, promote, rollback,
history). An alias is a named pointer at an entry, written like `latest.json` (from the
entry's own entry.json): `latest` is `latest.json` (what predict, batch-predict and
evaluate read), any other alias `aliases/<alias>.json`. An alias is a lower-case name
without `-`, so it never reads as an entry's name. `promote` points an alias at an entry
only once the entry verifies (every file against its sha256; an S3 entry is downloaded to
be checked), and `rollback` points it at the entry registered before the one it names;
entries themselves are never changed. Every move of an alias (a register's move of
`latest` included) first appends one JSON line to `history.jsonl` (when, who, the
action, the alias, the entry and the one it replaced), rewritten whole and atomically:
in a folder through a temp file and a rename, under an flock of the registry folder (the
move too, so concurrent changes queue); on S3 as one PUT conditional on the ETag read
(If-Match; If-None-Match for the first line), retried when another writer came first,
so no line is lost.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from postergenre.atomic import atomic_folder, atomic_open, folder_mode, write_json
from postergenre.data.storage import is_remote, remote_fs
from postergenre.evaluation.gate import BLESSED

log = logging.getLogger(__name__)
LATEST_FILE = "latest.json"
ENTRY_FILE = "entry.json"
THRESHOLDS_FILE = "thresholds.json"
MODEL_FOLDER = "model"
FILES_KEY = "files"  # entry.json: {relative path: sha256} of every other file of the entry
HASH_ALGORITHM = "sha256"
LATEST = "latest"  # the alias whose pointer is LATEST_FILE
ALIASES_FOLDER = "aliases"  # every other alias: aliases/<alias>.json
HISTORY_FILE = "history.jsonl"  # one JSON line per move of an alias, appended
# Conditional PUTs of history.jsonl on S3 that lost to another writer are retried.
HISTORY_TRIES = 8
# `export_latest`'s record of what it copied (beside model/ and thresholds.json).
EXPORT_RECORD = "blessed.json"
# A staging folder of another host cannot be checked for a live process: after this long
# it is taken for the leftover of a killed register (a register copies a model in minutes).
STALE_STAGING_SECONDS = 6 * 3600
_STAGING = re.compile(r"^\.(?P<entry>.+)\.staging\.(?P<pid>\d+)\.(?P<host>[^.]*)\.[^.]+$")
# Staging folders of registers from before the pid/host naming: `.<entry>.<random>`.
_OLD_STAGING = re.compile(r"^\.(?P<entry>.+-[0-9a-f]{16})\.[a-z0-9_]{8}$")
# An entry's name (`entry_name_for`: a model name as configs allows it, then hex): one
# folder of the registry, never a path.
_ENTRY_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}-[0-9a-f]{1,64}")
# An alias: a model name's alphabet without `-`, so never an entry's name.
_ALIAS_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


class RegistryError(ValueError):
    """A register that cannot complete; the message names the registry and the entry."""


class RegistryIntegrityError(RegistryError):
    """An entry whose files are not those it was registered with (or lack their hashes)."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_hash(folder: str | os.PathLike[str]) -> str:
    """sha256 over every file's relative path and bytes, in sorted order."""
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _walk(root: Path) -> tuple[list[str], dict[str, str]]:
    """(regular files, {anything else but folders: what it is}) under `root`, as sorted
    relative posix paths; a symlink is listed, never followed."""
    files, others = [], {}
    for folder, folders, names in os.walk(root):
        for name in (*folders, *names):
            path = Path(folder, name)
            mode = path.lstat().st_mode
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(mode):
                others[rel] = "a symlink"
            elif stat.S_ISREG(mode):
                files.append(rel)
            elif not stat.S_ISDIR(mode):
                others[rel] = "not a regular file"
    return sorted(files), dict(sorted(others.items()))


def file_hashes(entry: str | os.PathLike[str]) -> dict[str, str]:
    """{relative posix path: sha256} of every regular file of an entry folder but
    entry.json (symlinks and other non-files are `verify_entry`'s to refuse)."""
    root = Path(entry)
    return {rel: file_sha256(root / rel) for rel in _walk(root)[0] if rel != ENTRY_FILE}


def data_version_of(source: str | os.PathLike[str]) -> str | None:
    """The version of the poster data: the md5 DVC records in a `.dvc` file, or, given the
    poster folder itself (`make real`), `sha256:` and a hash of its files' names and
    contents; None when there is neither."""
    import yaml

    path = Path(source)
    if path.is_dir():
        digest = hashlib.sha256()
        for name, sha in file_hashes(path).items():
            digest.update(f"{name}\0{sha}\n".encode())
        return f"sha256:{digest.hexdigest()}"
    if not path.is_file():
        return None
    outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def data_source_of(source: str | os.PathLike[str], data_version: str | None) -> str | None:
    """What the poster data is: "demo" (every row of its labels.csv is a synthetic poster
    of `sources.demo`) or "real"; None when unknown (no .dvc file, its data not checked
    out, or `data_version` is not the data's version). `source`: a `.dvc` file, or the
    poster folder itself.

    Recorded in the entry so that predict can warn that a model trained on demo data says
    nothing about real posters (nothing else in an entry tells the two apart).
    """
    import yaml

    from postergenre.data.labels import LABELS_FILE

    path = Path(source)
    if data_version is None or data_version_of(path) != data_version:
        return None
    if path.is_dir():
        labels = path / LABELS_FILE
    else:
        outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or [{}]
        if not outs[0].get("path"):
            return None
        labels = path.parent / str(outs[0]["path"]) / LABELS_FILE
    return labels_source(labels)


def labels_source(labels: str | os.PathLike[str]) -> str | None:
    """"demo" when every row of a labels.csv is a synthetic poster of `sources.demo`,
    else "real"; None when the file is not there."""
    from postergenre.data.labels import read_labels
    from postergenre.sources.demo import DEMO_ID_BASE

    if not Path(labels).is_file():
        return None
    table = read_labels(labels)
    demo = [_is_demo_row(imdb_id, title, DEMO_ID_BASE)
            for imdb_id, title in zip(table["imdb_id"], table["title"], strict=True)]
    return "demo" if demo and all(demo) else "real"


def _is_demo_row(imdb_id: object, title: object, id_base: int) -> bool:
    """A row `sources.demo` wrote: "Demo poster N" with the id that N gives (a real movie
    that happened to bear such a title would not also have that id)."""
    match = re.fullmatch(r"Demo poster (\d+)", title) if isinstance(title, str) else None
    return match is not None and imdb_id == f"tt{id_base + int(match[1]) - 1:07d}"


def entry_name_for(name: str, source: Path, thresholds: dict | None,
                   data_version: str | None) -> str:
    """`<model>-<16 hex>`: a hash of the model's files, the thresholds and the data version
    (everything an entry is; the blessing's time and wording are not)."""
    digest = hashlib.sha256()
    digest.update(content_hash(source).encode() + b"\0")
    digest.update(json.dumps(thresholds, sort_keys=True).encode() + b"\0")
    digest.update(json.dumps(data_version).encode())
    return f"{name}-{digest.hexdigest()[:16]}"


def _stage_entry(staging: Path, source: Path, entry_info: dict, thresholds: dict | None) -> None:
    shutil.copytree(source, staging / MODEL_FOLDER)
    if thresholds:
        write_json(staging / THRESHOLDS_FILE, thresholds)
    entry_info[FILES_KEY] = file_hashes(staging)
    entry_info["hash_algorithm"] = HASH_ALGORITHM
    # Written last: its presence marks a complete entry (what S3 readers check).
    write_json(staging / ENTRY_FILE, entry_info)


def _pointer_of(entry_info: dict, registry_dir: str | os.PathLike[str]) -> dict:
    """An alias's pointer (`latest.json`, `aliases/<alias>.json`), from the entry's own
    entry.json (so they agree)."""
    entry_name = entry_info["entry"]
    return {"model": entry_info["model"], "entry": entry_name,
            "path": f"{entry_name}/{MODEL_FOLDER}",
            "uri": f"{str(registry_dir).rstrip('/')}/{entry_name}",
            "data_version": entry_info.get("data_version"),
            "data_source": entry_info.get("data_source"),
            "lineage": entry_info.get("lineage"),
            "metrics": (entry_info.get("blessing") or {}).get("metrics"),
            "registered_at": entry_info.get("registered_at")}


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def remove_stale_staging(registry: Path, now: float | None = None) -> list[str]:
    """Delete the staging folders killed registers left in a local registry; their names.

    A folder of this host whose process is gone goes at once; one of another host (or of
    the older naming) once it is older than STALE_STAGING_SECONDS. A live register's
    staging folder is never touched.
    """
    now = time.time() if now is None else now
    removed = []
    for path in registry.iterdir() if registry.is_dir() else ():
        if not path.is_dir() or not path.name.startswith("."):
            continue
        match = _STAGING.match(path.name)
        if match is None and not _OLD_STAGING.match(path.name):
            continue
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:  # finished (renamed) meanwhile
            continue
        dead = (match is not None and match["host"] == _host()
                and _process_gone(int(match["pid"])))
        if dead or age > STALE_STAGING_SECONDS:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    if removed:
        log.warning("register: removed %d staging folder(s) killed registers left in %s: %s",
                    len(removed), registry, ", ".join(removed))
    return removed


def register(
    blessing_path: str | os.PathLike[str],
    model_dirs: Mapping[str, str | os.PathLike[str]],
    registry_dir: str | os.PathLike[str],
    data_version: str | None = None,
    data_source: str | None = None,
    *,
    lineage: Mapping[str, Mapping[str, str]] | None = None,
) -> Path | str | None:
    """Copy the blessed model into the registry and point `latest` at it.

    `data_source` ("demo", "real" or None for unknown; see `data_source_of`) is recorded
    beside the data version. `lineage` maps model names to where each came from
    (`postergenre.lineage`: data_version, git_commit, params_hash, image); the blessed
    model's is recorded as the entry's `lineage` (None: unknown). Returns the entry (a
    local Path, or the `s3://` URI of a remote one), or None when the gate rejected every
    model.
    """
    blessing = json.loads(Path(blessing_path).read_text())
    remote = is_remote(registry_dir)
    if not remote:
        # The registry exists even before its first entry (DVC tracks the folder).
        Path(registry_dir).mkdir(parents=True, exist_ok=True)
    if blessing.get("decision") != BLESSED:
        log.warning("register: the gate rejected every model; nothing registered")
        return None
    name = blessing["model"]
    if name not in model_dirs:
        raise KeyError(f"blessed model {name!r} not among the given models {sorted(model_dirs)}")
    source = Path(model_dirs[name])
    if not source.is_dir():
        raise FileNotFoundError(f"blessed model folder not found: {source}")
    thresholds = blessing.get("thresholds")
    if not thresholds:
        log.warning("register: the blessing %s holds no thresholds (gate ran without "
                    "--thresholds): predict and batch-predict will refuse this entry",
                    blessing_path)
    entry_name = entry_name_for(name, source, thresholds, data_version)
    entry_info = {"model": name, "entry": entry_name, "data_version": data_version,
                  "data_source": data_source,
                  "lineage": dict((lineage or {}).get(name) or {}) or None,
                  "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
                  "blessing": blessing}
    if remote:
        return _register_remote(registry_dir, source, entry_name, entry_info, thresholds)
    registry = Path(registry_dir)
    remove_stale_staging(registry)
    entry = registry / entry_name
    if not (entry / ENTRY_FILE).is_file():
        _publish_local(registry, entry, source, entry_info, thresholds)
    # An entry already there (an earlier or concurrent register) is used as it is, once
    # verified: latest.json is written from its entry.json.
    info = verify_entry(entry)
    _move_alias(_Store(registry_dir), LATEST, info, "register")
    log.info("register: %s -> %s", name, entry)
    return entry


def _publish_local(registry: Path, entry: Path, source: Path, entry_info: dict,
                   thresholds: dict | None) -> None:
    """Stage the entry in a hidden folder and rename it into place (see the module doc)."""
    try:
        staging = Path(tempfile.mkdtemp(
            dir=registry, prefix=f".{entry.name}.staging.{os.getpid()}.{_host()}."))
    except OSError as err:
        raise RegistryError(f"{registry}: cannot write a new entry ({err.strerror or err})") \
            from None
    try:
        staging.chmod(folder_mode())  # mkdtemp makes it 0700: other readers need the entry
        _stage_entry(staging, source, entry_info, thresholds)
        try:
            os.rename(staging, entry)
        except OSError as err:
            # A concurrent register of the same entry renamed first (the target exists and
            # is not empty): its entry holds the same bytes, verified by the caller.
            if not (entry / ENTRY_FILE).is_file():
                raise RegistryError(f"{entry}: cannot move the new entry into place "
                                    f"({err.strerror or err}); a folder of that name "
                                    "exists without entry.json: remove it and register "
                                    "again") from None
            log.info("register: %s was registered concurrently; using it", entry.name)
    except OSError as err:
        raise RegistryError(f"{entry}: cannot write the entry "
                            f"({err.strerror or err}: {getattr(err, 'filename', '')})") \
            from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _register_remote(registry_dir: str | os.PathLike[str], source: Path, entry_name: str,
                     entry_info: dict, thresholds: dict | None) -> str:
    fs, root = remote_fs(str(registry_dir))
    entry_json = f"{root}/{entry_name}/{ENTRY_FILE}"
    if not fs.exists(entry_json):
        with tempfile.TemporaryDirectory(prefix="postergenre-reg-") as tmp:
            _stage_entry(Path(tmp) / "e", source, entry_info, thresholds)
            for path in sorted(Path(tmp, "e").rglob("*"), key=lambda p: p.name == ENTRY_FILE):
                if path.is_file():
                    rel = path.relative_to(Path(tmp, "e")).as_posix()
                    fs.put_file(str(path), f"{root}/{entry_name}/{rel}")
    info = json.loads(fs.cat_file(entry_json))
    _check_info(info, f"{registry_dir}/{entry_name}")
    latest = _move_alias(_Store(registry_dir), LATEST, info, "register")
    log.info("register: %s -> %s", entry_info["model"], latest["uri"])
    return str(latest["uri"])


def _alias_file(alias: str) -> str:
    """Where an alias's pointer lives, relative to the registry; a bad name is refused."""
    if not _ALIAS_NAME.fullmatch(alias):
        raise RegistryError(f"{alias[:80]!r} is not an alias name (lower-case letters, "
                            "digits and _, starting with a letter; at most 40)")
    return LATEST_FILE if alias == LATEST else f"{ALIASES_FOLDER}/{alias}.json"


def read_alias(registry_dir: str | os.PathLike[str], alias: str = LATEST) -> dict | None:
    """An alias's pointer (`latest`: `latest.json`), or None when it points nowhere yet;
    refused (RegistryIntegrityError naming the file) when not JSON, or its `entry` is
    not an entry's name (see the module doc)."""
    return _Store(registry_dir).pointer(alias)


def read_latest(registry_dir: str | os.PathLike[str]) -> dict | None:
    """The `latest.json` pointer, or None when nothing was registered yet (`read_alias`)."""
    return read_alias(registry_dir, LATEST)


def _check_info(info: Any, where: str) -> dict:
    if not isinstance(info, dict) or not isinstance(info.get(FILES_KEY), dict) \
            or not info[FILES_KEY]:
        raise RegistryIntegrityError(
            f"{where}: {ENTRY_FILE} records no file hashes (an entry registered before "
            "entries were verified, or an edited one): register the model again")
    return info


def entry_of(path: str | os.PathLike[str]) -> Path | None:
    """The registry entry a folder is (it holds entry.json) or is the model/ folder of."""
    folder = Path(path)
    if (folder / ENTRY_FILE).is_file():
        return folder
    if folder.name == MODEL_FOLDER and (folder.parent / ENTRY_FILE).is_file():
        return folder.parent
    return None


def verify_entry(entry: str | os.PathLike[str]) -> dict:
    """entry.json of a local entry, after checking every file against its sha256.

    Raises RegistryIntegrityError naming the entry and the files that changed, are
    missing or were added since it was registered.
    """
    entry = Path(entry)
    path = entry / ENTRY_FILE
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{entry}: not a complete registry entry (no {ENTRY_FILE})") \
            from None
    if not stat.S_ISREG(mode):  # a symlink is not followed, a FIFO would block the read
        raise RegistryIntegrityError(f"{path}: not a regular file: refusing to use it")
    try:
        info = json.loads(path.read_text())
    except ValueError as err:
        raise RegistryIntegrityError(f"{path}: not JSON ({err})") from None
    expected = _check_info(info, str(entry))[FILES_KEY]
    files, others = _walk(entry)
    found = {rel: file_sha256(entry / rel) for rel in files if rel != ENTRY_FILE}
    problems = [f"{rel} changed" for rel in sorted(expected)
                if rel in found and found[rel] != expected[rel]]
    problems += [f"{rel} missing" for rel in sorted(set(expected) - set(found) - set(others))]
    problems += [f"{rel} added" for rel in sorted(set(found) - set(expected))]
    problems += [f"{rel} {'changed into' if rel in expected else 'added as'} {what}"
                 for rel, what in others.items()]
    if problems:
        raise RegistryIntegrityError(
            f"{entry}: the entry's files are not those registered ({'; '.join(problems)}): "
            "refusing to use it; register the model again")
    return info


def fetch_latest(registry_dir: str | os.PathLike[str],
                 cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """A local folder holding the latest entry (`model/`, `thresholds.json`, `entry.json`),
    verified against the hashes in its entry.json (RegistryIntegrityError otherwise).

    A local registry's entry is used in place; a remote one is downloaded once into
    `cache_dir` (default: a temporary folder). None when nothing was registered yet.
    """
    latest = read_latest(registry_dir)
    if latest is None:
        return None
    return fetch_entry(registry_dir, latest["entry"], cache_dir, pointed_by=LATEST_FILE)


def fetch_entry(registry_dir: str | os.PathLike[str], entry_name: str,
                cache_dir: str | os.PathLike[str] | None = None,
                pointed_by: str | None = None) -> Path:
    """A local folder holding the entry `entry_name`, verified (`fetch_latest`);
    FileNotFoundError when the registry holds no complete entry of that name."""
    if not _ENTRY_NAME.fullmatch(entry_name):
        raise RegistryError(f"{entry_name[:80]!r} is not the name of an entry "
                            "(<model>-<hex digits>)")
    said = f"{pointed_by} points at an incomplete entry" if pointed_by else \
        "no such entry (or an incomplete one)"
    if not is_remote(registry_dir):
        entry = Path(registry_dir) / entry_name
        if not (entry / ENTRY_FILE).is_file():
            raise FileNotFoundError(f"{entry}: {said}")
        verify_entry(entry)
        return entry
    fs, root = remote_fs(str(registry_dir))
    if not fs.exists(f"{root}/{entry_name}/{ENTRY_FILE}"):
        raise FileNotFoundError(f"{str(registry_dir).rstrip('/')}/{entry_name}: {said}")
    cache = Path(cache_dir or tempfile.mkdtemp(prefix="postergenre-registry-"))
    cache.mkdir(parents=True, exist_ok=True)
    local = cache / entry_name
    if not (local / ENTRY_FILE).is_file():  # entries are write-once: a cached copy is current
        staging = Path(tempfile.mkdtemp(dir=cache, prefix=f".{entry_name}."))
        try:
            fs.get(f"{root}/{entry_name}/", str(staging) + "/", recursive=True)
            shutil.rmtree(local, ignore_errors=True)
            try:
                os.rename(staging, local)
            except OSError:
                if not (local / ENTRY_FILE).is_file():  # not a concurrent fetch's copy
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    verify_entry(local)  # the download, or a cached copy someone may have changed
    return local


def export_latest(registry_dir: str | os.PathLike[str],
                  out_dir: str | os.PathLike[str]) -> dict:
    """Write `out_dir` whole (atomically): the registry's latest entry, verified, as the
    model served at this point of the project: `model/`, `thresholds.json` (what
    `predict --model OUT/model` reads beside it) and EXPORT_RECORD (the entry, its model,
    data version and source, and metrics); only EXPORT_RECORD, `entry` null, while
    nothing is registered. Return the record.

    dvc.yaml's `artifacts:` names this folder (a DVC output of the gate stage), so that
    `dvc artifacts get` and GTO see the blessed model. Its bytes follow the entry's
    content only (no registration time, no commit), so a rerun that registers the same
    model leaves dvc.lock as it was.
    """
    with tempfile.TemporaryDirectory(prefix="postergenre-export-") as cache:
        entry = fetch_latest(registry_dir, cache)  # verified
        record: dict[str, Any] = {"entry": None, "registry": str(registry_dir)}
        with atomic_folder(out_dir) as partial:
            if entry is not None:
                info = json.loads((entry / ENTRY_FILE).read_text())
                record.update(entry=info["entry"], model=info["model"],
                              data_version=info.get("data_version"),
                              data_source=info.get("data_source"),
                              metrics=(info.get("blessing") or {}).get("metrics"))
                shutil.copytree(entry / MODEL_FOLDER, partial / MODEL_FOLDER)
                if (entry / THRESHOLDS_FILE).is_file():
                    shutil.copyfile(entry / THRESHOLDS_FILE, partial / THRESHOLDS_FILE)
            write_json(partial / EXPORT_RECORD, record)
    return record


def read_thresholds(entry_dir: str | os.PathLike[str]) -> dict | None:
    """The entry's decision thresholds ({"global": t, "per_genre": {genre: t}}), if any."""
    path = Path(entry_dir) / THRESHOLDS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def require_thresholds(entry_dir: str | os.PathLike[str]) -> dict:
    """A registry entry's thresholds, for serving; an entry without them is an error."""
    saved = read_thresholds(entry_dir)
    if not saved or not saved.get("per_genre"):
        raise RegistryError(
            f"{entry_dir}: registry entry has no per-genre thresholds ({THRESHOLDS_FILE}); "
            "it was registered from a blessing without thresholds (gate --thresholds): "
            "serving it with 0.5 for every genre would not be the model that was blessed")
    return saved


# --- aliases and history (the module doc) ------------------------------------------------


class _Store:
    """The small files of a registry (pointers, history, entry.json), in a folder or on
    S3, each read whole and written whole and atomically."""

    def __init__(self, registry_dir: str | os.PathLike[str]) -> None:
        self.where = str(registry_dir).rstrip("/")
        self.remote = is_remote(registry_dir)
        if self.remote:
            self.fs, self.root = remote_fs(self.where)

    def name(self, rel: str) -> str:
        return f"{self.where}/{rel}"

    def read(self, rel: str) -> bytes | None:
        if self.remote:
            try:
                return bytes(self.fs.cat_file(f"{self.root}/{rel}"))
            except FileNotFoundError:
                return None
        path = Path(self.where, rel)
        return path.read_bytes() if path.is_file() else None

    def write(self, rel: str, data: bytes) -> None:
        if self.remote:
            self.fs.pipe_file(f"{self.root}/{rel}", data)  # one PUT: atomic
            return
        with atomic_open(Path(self.where, rel), "wb") as handle:
            handle.write(data)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The registry folder flock'ed (changes of aliases and history queue); on S3 a
        no-op (history's PUTs are conditional instead)."""
        if self.remote:
            yield
            return
        import fcntl

        Path(self.where).mkdir(parents=True, exist_ok=True)
        fd = os.open(self.where, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def pointer(self, alias: str) -> dict | None:
        rel = _alias_file(alias)
        text = self.read(rel)
        if text is None:
            return None
        try:
            pointer = json.loads(text)
        except ValueError as err:  # UnicodeDecodeError included
            raise RegistryIntegrityError(f"{self.name(rel)}: not JSON ({err})") from None
        if pointer is None:  # JSON null: points nowhere yet
            return None
        entry = pointer.get("entry") if isinstance(pointer, dict) else None
        if not isinstance(entry, str) or not _ENTRY_NAME.fullmatch(entry):
            raise RegistryIntegrityError(
                f"{self.name(rel)}: 'entry' is {str(entry)[:80]!r}, not the name of an "
                "entry of this registry (<model>-<hex digits>): refusing to follow it")
        return pointer

    def aliases(self) -> dict[str, str]:
        """{alias: entry name} of every alias that points somewhere, `latest` first."""
        names = [LATEST]
        if self.remote:
            folder = f"{self.root}/{ALIASES_FOLDER}"
            found = [p.rsplit("/", 1)[-1] for p in self.fs.ls(folder, detail=False)] \
                if self.fs.isdir(folder) else []
        else:
            folder_path = Path(self.where, ALIASES_FOLDER)
            found = [p.name for p in folder_path.iterdir()] if folder_path.is_dir() else []
        names += sorted(n.removesuffix(".json") for n in found if n.endswith(".json")
                        and _ALIAS_NAME.fullmatch(n.removesuffix(".json"))
                        and n != f"{LATEST}.json")
        pointers = {alias: self.pointer(alias) for alias in names}
        return {alias: str(p["entry"]) for alias, p in pointers.items() if p is not None}

    def entry_names(self) -> list[str]:
        """Every complete entry (a folder named like one, holding entry.json)."""
        if self.remote:
            folders = [p.rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False)] \
                if self.fs.isdir(self.root) else []
            return sorted(n for n in folders if _ENTRY_NAME.fullmatch(n)
                          and self.fs.exists(f"{self.root}/{n}/{ENTRY_FILE}"))
        root = Path(self.where)
        return sorted(p.name for p in root.iterdir() if _ENTRY_NAME.fullmatch(p.name)
                      and not p.is_symlink() and (p / ENTRY_FILE).is_file()) \
            if root.is_dir() else []

    def entry_info(self, entry_name: str) -> dict:
        """An entry's entry.json as recorded (not verified: `fetch_entry` verifies)."""
        rel = f"{entry_name}/{ENTRY_FILE}"
        text = self.read(rel)
        if text is None:
            raise FileNotFoundError(f"{self.name(entry_name)}: no such entry (or an "
                                    "incomplete one)")
        try:
            info = json.loads(text)
        except ValueError as err:
            raise RegistryIntegrityError(f"{self.name(rel)}: not JSON ({err})") from None
        return _check_info(info, self.name(entry_name))

    def append_history(self, record: dict) -> None:
        """One JSON line appended to HISTORY_FILE, the file written whole and atomically
        (locally under `locked`; on S3 conditional on what was read, retried)."""
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        if not self.remote:
            self.write(HISTORY_FILE, (self.read(HISTORY_FILE) or b"") + line)
            return
        key = f"{self.root}/{HISTORY_FILE}"
        for _ in range(HISTORY_TRIES):
            self.fs.invalidate_cache(key)
            try:
                etag = self.fs.info(key)["ETag"]
            except FileNotFoundError:
                try:
                    self.fs.pipe_file(key, line, mode="create")  # If-None-Match: *
                    return
                except FileExistsError:  # another writer's first line came first
                    continue
            data = bytes(self.fs.cat_file(key))
            try:
                self.fs.pipe_file(key, data + line, IfMatch=etag)
                return
            except FileNotFoundError:  # deleted since read
                continue
            except OSError as err:  # s3fs's 412 (PreconditionFailed): changed since read
                if err.errno != errno.EINVAL:
                    raise
        raise RegistryError(f"{self.name(HISTORY_FILE)}: {HISTORY_TRIES} tries to append "
                            "lost to other writers; try again")


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's UID without a passwd entry
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _move_alias(store: _Store, alias: str, info: dict, action: str) -> dict:
    """Point `alias` at the (verified) entry `info`, the move recorded first in the
    history; return the new pointer. An alias already there is no change: nothing is
    written (a rerun registering the same entry)."""
    pointer = _pointer_of(info, store.where)
    with store.locked():
        previous = store.pointer(alias)
        if previous is not None and previous["entry"] == info["entry"]:
            return pointer
        store.append_history({"at": _now(), "by": _who(), "action": action,
                              "alias": alias, "entry": info["entry"],
                              "previous": previous["entry"] if previous else None})
        store.write(_alias_file(alias), (json.dumps(pointer, indent=2) + "\n").encode())
    return pointer


def resolve(registry_dir: str | os.PathLike[str], name: str = LATEST) -> str:
    """The entry `name` is: an entry's own name, or an alias's (FileNotFoundError when
    neither)."""
    store = _Store(registry_dir)
    if _ENTRY_NAME.fullmatch(name):
        store.entry_info(name)  # there, complete
        return name
    pointer = store.pointer(name)  # a bad alias name is refused here
    if pointer is None:
        raise FileNotFoundError(f"{store.where}: no alias {name!r} (aliases: "
                                f"{', '.join(store.aliases()) or 'none yet'})")
    return str(pointer["entry"])


def list_entries(registry_dir: str | os.PathLike[str]) -> list[dict]:
    """Every complete entry's entry.json, oldest registration first (ties by name), each
    with `aliases`: the aliases pointing at it. Not verified (`show` verifies)."""
    store = _Store(registry_dir)
    by_entry: dict[str, list[str]] = {}
    for alias, entry in store.aliases().items():
        by_entry.setdefault(entry, []).append(alias)
    infos = [{**store.entry_info(name), "aliases": by_entry.get(name, [])}
             for name in store.entry_names()]
    # registered_at has whole seconds: within one, the history's order of registers.
    order: dict[str, int] = {}
    for number, record in enumerate(read_history(registry_dir)):
        if record.get("action") == "register":
            order.setdefault(str(record.get("entry")), number)
    return sorted(infos, key=lambda i: (_when(i.get("registered_at")),
                                        order.get(i["entry"], len(order)), i["entry"]))


def _when(stamp: object) -> datetime:
    try:
        when = datetime.fromisoformat(str(stamp))
    except ValueError:  # missing or unreadable: first
        return datetime.min.replace(tzinfo=UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def show_entry(registry_dir: str | os.PathLike[str], name: str = LATEST,
               cache_dir: str | os.PathLike[str] | None = None) -> dict:
    """The entry `name` (an entry or an alias), verified, as its entry.json with `path`
    (the local folder checked), `uri` and `aliases`."""
    entry_name = resolve(registry_dir, name)
    path = fetch_entry(registry_dir, entry_name, cache_dir)  # verified
    info = json.loads((path / ENTRY_FILE).read_text())
    aliases = [a for a, e in _Store(registry_dir).aliases().items() if e == entry_name]
    return {**info, "path": str(path), "aliases": aliases,
            "uri": f"{str(registry_dir).rstrip('/')}/{entry_name}"}


def promote(registry_dir: str | os.PathLike[str], name: str, alias: str = LATEST,
            action: str = "promote") -> dict:
    """Point `alias` at the entry `name` (an entry, or another alias's entry) once it
    verifies (RegistryIntegrityError otherwise, and the alias stays where it was); the
    move is recorded in the history. Returns the new pointer."""
    _alias_file(alias)  # a bad alias name is refused before anything is read
    entry_name = resolve(registry_dir, name)
    with tempfile.TemporaryDirectory(prefix="postergenre-verify-") as cache:
        path = fetch_entry(registry_dir, entry_name, cache)  # verified
        info = json.loads((path / ENTRY_FILE).read_text())
    pointer = _move_alias(_Store(registry_dir), alias, info, action)
    log.info("registry: %s -> %s (%s)", alias, entry_name, action)
    return pointer


def rollback(registry_dir: str | os.PathLike[str], alias: str = LATEST) -> dict:
    """Point `alias` at the entry registered just before the one it points at (verified
    first, as `promote`); RegistryError when there is none. Returns the new pointer."""
    store = _Store(registry_dir)
    current = store.pointer(alias)
    if current is None:
        raise RegistryError(f"{store.where}: the alias {alias!r} points nowhere yet: "
                            "nothing to roll back")
    order = [info["entry"] for info in list_entries(registry_dir)]
    if current["entry"] not in order:
        raise RegistryError(f"{store.where}: {alias} points at {current['entry']}, which "
                            "is not a complete entry of this registry")
    at = order.index(current["entry"])
    if at == 0:
        raise RegistryError(f"{store.where}: {current['entry']} is the first entry "
                            f"registered: nothing before it to roll {alias} back to")
    return promote(registry_dir, order[at - 1], alias, action="rollback")


def read_history(registry_dir: str | os.PathLike[str]) -> list[dict]:
    """Every recorded move of an alias, oldest first."""
    store = _Store(registry_dir)
    text = store.read(HISTORY_FILE) or b""
    records = []
    for number, line in enumerate(text.decode().splitlines(), 1):
        try:
            records.append(json.loads(line))
        except ValueError as err:
            raise RegistryIntegrityError(f"{store.name(HISTORY_FILE)} line {number}: not "
                                         f"JSON ({err})") from None
    return records
