"""Helpers the test modules share (no test module imports another): tiny trained models,
small validation data sets, DVC project copies, tiny training flags."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from postergenre.configs import ValidateConfig
from postergenre.data.labels import LABEL_COLUMNS
from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent

# ---- a tiny trained model ---------------------------------------------------------------

TINY_MODEL = {"conv1_filters": 4, "conv2_filters": 4, "dense_units": 8, "epochs": 1,
              "batch_size": 32, "learning_rate": 0.02}


def train_tiny(prepared: Path, out: Path) -> Path:
    """A from-scratch CNN trained for one epoch: real weights, in a few seconds."""
    from postergenre.configs import ScratchConfig
    from postergenre.training.scratch import train_scratch

    train_scratch(prepared, out, ScratchConfig(**TINY_MODEL), name="scratch")
    return out

# Training flags of a tiny scratch CNN, as the CLI takes them.
TINY_FLAGS = ["--conv1-filters", "4", "--conv2-filters", "8", "--dense-units", "16",
              "--batch-size", "16", "--stop-patience", "20"]


# ---- small data sets for validate ----------------------------------------------------------

def validate_config(hard: tuple[str, ...] = (), soft: tuple[str, ...] = (),
                    **settings) -> ValidateConfig:
    """The rules' own policy with `hard` / `soft` rules moved.

    Small tables cannot have every genre: support is off unless a test sets it (it is
    tested on its own below).
    """
    return ValidateConfig(soft_rules=tuple(soft), hard_rules=tuple(hard),
                          **{"min_genre_support": 0, **settings})


def poster_art(seed: int, height: int = 72, width: int = 48) -> np.ndarray:
    """Blocky random colour art: distinct posters have distinct perceptual hashes."""
    small = np.random.default_rng(seed).integers(0, 256, (6, 4, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


def write_poster(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), poster_art(int(path.stem[2:])))


def label_row(n: int, genres: str = "Drama|Comedy") -> dict[str, str]:
    imdb_id = f"tt{n:07d}"
    return {
        "imdb_id": imdb_id,
        "tmdb_id": str(1000 + n),
        "movielens_id": str(n),
        "title": f"Movie {n}",
        "poster": f"posters/{imdb_id}.jpg",
        "genres": genres,
        "source_genres": genres,
    }


def make_dataset(
    root: Path, rows: list[dict[str, str]], skip_posters: tuple[str, ...] = ()
) -> Path:
    """Write labels.csv (line 2 = rows[0]) and an 8x8 JPEG per row unless skipped."""
    data = root / "data"
    data.mkdir(parents=True)
    pd.DataFrame(rows, columns=list(LABEL_COLUMNS)).to_csv(data / "labels.csv", index=False)
    for row in rows:
        if row["poster"] and row["poster"] not in skip_posters:
            write_poster(data / row["poster"])
    return data


def jpeg_bytes(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


# ---- DVC projects --------------------------------------------------------------------------

def run_ok(args, cwd):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def project_copy(tmp_path) -> Path:
    """dvc.yaml, params.yaml, data.dvc, .dvc/config and the sources, in a fresh git repo."""
    project = tmp_path / "project"
    for name in ("dvc.yaml", "params.yaml", "data.dvc", ".dvcignore", ".gitignore"):
        shutil.copy(REPO_ROOT / name, project / name) if project.exists() else (
            project.mkdir(), shutil.copy(REPO_ROOT / name, project / name))
    (project / ".dvc").mkdir()
    shutil.copy(REPO_ROOT / ".dvc" / "config", project / ".dvc" / "config")
    shutil.copytree(REPO_ROOT / ".dvc" / "plots", project / ".dvc" / "plots")
    shutil.copytree(REPO_ROOT / "src", project / "src")
    run_ok(["git", "init", "-q"], project)
    # As a clone has: a commit (DVCLive, which the training stages log to, reads HEAD).
    run_ok(["git", "add", "-A"], project)
    run_ok(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"],
           project)
    return project


def tiny_project(tmp_path, added_model: str = "") -> tuple[Path, dict]:
    """A project copy whose params.yaml is the repo's (plus `added_model`, an entry appended
    to its models) with params-tiny.yaml laid over it, as `postergenre params` resolves it,
    and the tiny demo data set."""
    project = project_copy(tmp_path)
    (project / "params.yaml").write_text((project / "params.yaml").read_text() + added_model)
    resolved = run_ok(["postergenre", "params", "--params", "params.yaml", "--params",
                     str(REPO_ROOT / "params-tiny.yaml")], project)
    (project / "params.yaml").write_text(resolved)
    run_ok(["postergenre", "ingest", "--source", "demo", "--out", "data"], project)
    return project, yaml.safe_load(resolved)


# ---- lock files ------------------------------------------------------------------------------

LOCK = REPO_ROOT / "requirements.lock"
IMAGE_LOCK = REPO_ROOT / "docker" / "requirements-image.lock"  # the images' subset
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


# ---- hostile images --------------------------------------------------------------------------

def png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_text_bomb() -> bytes:
    """A PNG declaring 20000 x 20000 pixels whose zTXt chunk (before the pixels) inflates
    past Pillow's text limit: Pillow cannot read its header."""
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    text = b"Comment\0\0" + zlib.compress(b"a" * (2 << 20), 9)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"zTXt", text)
            + png_chunk(b"IDAT", zlib.compress(bytes(20001 * 4))) + png_chunk(b"IEND", b""))


def radiance_hdr() -> bytes:
    """A Radiance .hdr image: OpenCV decodes it; it is no poster format."""
    import cv2
    import numpy as np

    ok, data = cv2.imencode(".hdr", np.full((72, 48, 3), 0.5, np.float32))
    assert ok
    return data.tobytes()


def assert_probe_scores_are_sklearns(keras_scores: np.ndarray, train_features: np.ndarray,
                                     train_y: np.ndarray, test_features: np.ndarray,
                                     atol: float) -> None:
    """Each genre's probe scores (columns of `keras_scores`) equal scikit-learn's
    LogisticRegression(C=0.5) fitted on the standardised `train_features` and applied to
    `test_features` (already standardised); a genre all positive or all negative is
    skipped."""
    from sklearn.linear_model import LogisticRegression

    from postergenre.training.linear_probe import standardise

    mean, variance = train_features.mean(axis=0), train_features.var(axis=0)
    for j in range(train_y.shape[1]):
        y = train_y[:, j]
        if y.min() == y.max():
            continue
        fitted = LogisticRegression(C=0.5, max_iter=2000).fit(
            standardise(train_features, mean, variance), y)
        np.testing.assert_allclose(keras_scores[:, j], fitted.predict_proba(test_features)[:, 1],
                                   atol=atol)
