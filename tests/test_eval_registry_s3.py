"""The registry on S3: a real S3-compatible server (moto, server mode) on loopback."""

import json

import pytest

from postergenre.evaluation.gate import gate
from postergenre.serving.registry import ENTRY_FILE, fetch_latest, read_latest, register

CARD = {"genres_per_movie": 2.0, "true_genres_per_movie": 2.0}
BASE = {"null": {"f1_micro": 0.0, "map_macro": 0.12, "hamming_loss": 0.12, **CARD},
        "most_frequent": {"f1_micro": 0.3, "map_macro": 0.12, "hamming_loss": 0.13, **CARD},
        "top3": {"f1_micro": 0.35, "map_macro": 0.12, "hamming_loss": 0.2, **CARD}}
GOOD = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.1, **CARD}


def test_s3_registry_is_write_once_and_latest_points_at_a_complete_entry(tmp_path, s3):
    (tmp_path / "metrics.json").write_text(json.dumps({"scratch": GOOD, **BASE}))
    gate(tmp_path, tmp_path)
    registry = "s3://models/postergenre"
    first_dir = tmp_path / "one"
    first_dir.mkdir()
    (first_dir / "model.keras").write_bytes(b"first")
    first = register(tmp_path / "blessing.json", {"scratch": first_dir}, registry, "v1")
    assert first.startswith("s3://models/postergenre/scratch-")

    second_dir = tmp_path / "two"
    second_dir.mkdir()
    (second_dir / "model.keras").write_bytes(b"second")
    second = register(tmp_path / "blessing.json", {"scratch": second_dir}, registry, "v2")
    assert second != first
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="models")["Contents"]}
    first_key = first.removeprefix("s3://models/")
    assert f"{first_key}/model/model.keras" in keys and f"{first_key}/{ENTRY_FILE}" in keys
    body = s3.get_object(Bucket="models", Key=f"{first_key}/model/model.keras")["Body"].read()
    assert body == b"first"  # never overwritten

    assert read_latest(registry)["data_version"] == "v2"
    local = fetch_latest(registry, tmp_path / "cache")
    assert (local / "model" / "model.keras").read_bytes() == b"second"
    assert json.loads((local / ENTRY_FILE).read_text())["data_version"] == "v2"


def test_latest_pointing_at_an_incomplete_entry_is_refused(tmp_path, s3):
    s3.put_object(Bucket="models", Key="r/latest.json",
                  Body=json.dumps({"entry": "scratch-0000", "path": "scratch-0000/model"}))
    s3.put_object(Bucket="models", Key="r/scratch-0000/model/model.keras", Body=b"half")
    with pytest.raises(FileNotFoundError, match="incomplete"):
        fetch_latest("s3://models/r", tmp_path / "cache")
