"""Byte-reproducible outputs (issue 13): what DVC hashes into dvc.lock is the same bytes on
a rerun of the same data and settings on the same machine."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from postergenre.reproducible import normalize_keras_archive, source_date
from tests.helpers import TINY_FLAGS


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_source_date_follows_the_environment(monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert source_date().isoformat() == "1970-01-01T00:00:00+00:00"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764633600")
    assert source_date().isoformat() == "2025-12-02T00:00:00+00:00"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ValueError, match="SOURCE_DATE_EPOCH must be whole seconds"):
        source_date()


def test_a_keras_archive_saved_twice_is_the_same_bytes_and_still_loads(tmp_path):
    import keras
    import numpy as np

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(19, activation="sigmoid")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    paths = []
    for name in ("a.keras", "b.keras"):
        model.save(tmp_path / name)
        paths.append(tmp_path / name)
        time.sleep(2.1)  # zip times have a 2-second resolution
    assert paths[0].read_bytes() != paths[1].read_bytes()  # what Keras writes
    for path in paths:
        normalize_keras_archive(path)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    with zipfile.ZipFile(paths[0]) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    x = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    loaded = keras.models.load_model(paths[0])
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


PROBE = """
import os
from postergenre.reproducible import fixed_hash_seed
if __name__ == "__main__":
    fixed_hash_seed("seed_probe")
    print(os.environ["PYTHONHASHSEED"], hash("postergenre"))
"""


def test_commands_run_with_a_fixed_hash_seed_unless_one_is_set(tmp_path):
    (tmp_path / "seed_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path])

    def probe(**extra: str) -> str:
        return subprocess.run([sys.executable, "-m", "seed_probe"], env={**env, **extra},
                              capture_output=True, text=True, check=True).stdout.strip()

    first, second = probe(), probe()
    assert first == second and first.startswith("0 ")
    assert probe(PYTHONHASHSEED="5").startswith("5 ")


@pytest.mark.slow
def test_training_twice_writes_the_same_model_folder_but_its_timing(tiny_prepared, tmp_path):
    """Two runs of the real CLI (each its own process, so its own hash seed unless fixed):
    every file of the model folder is the same bytes but timing.json, which .dvcignore
    keeps out of DVC's hash."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    folders = []
    for run in ("a", "b"):
        out = tmp_path / run
        subprocess.run([sys.executable, "-m", "postergenre.cli", "train-scratch", "--name",
                        "tiny", "--prepared", str(tiny_prepared), "--out", str(out),
                        "--epochs", "2", "--deterministic", *TINY_FLAGS],
                       env=env, check=True, capture_output=True, cwd=tmp_path)
        folders.append(_files(out))
    assert "timing.json" in folders[0] and "saved_model/fingerprint.pb" in folders[0]
    differ = sorted(name for name in folders[0] if folders[0][name] != folders[1].get(name))
    assert differ in ([], ["timing.json"]), differ
    assert set(folders[0]) == set(folders[1])
    ignored = (Path(__file__).parents[1] / ".dvcignore").read_text()
    assert "/outputs/**/timing.json" in ignored.splitlines()
