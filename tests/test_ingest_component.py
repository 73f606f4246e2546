"""The ingest component: thin over the library, no credential among its parameters."""

from __future__ import annotations

import inspect
import json
from types import SimpleNamespace

from postergenre.components import ingest as component
from postergenre.data.labels import read_labels
from tests.servers.fake_services import poster_jpeg


def _artifact(path):
    return SimpleNamespace(path=str(path), metadata={})


def test_component_runs_the_local_source_and_writes_a_report(tmp_path):
    folder = tmp_path / "dump"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(poster_jpeg(1))
    (folder / "labels.csv").write_text("imdb_id,poster,genres\ntt0000001,a.jpg,Drama\n")
    dataset, report = _artifact(tmp_path / "dataset"), _artifact(tmp_path / "report.json")
    # The `ingest` section of params.yaml as the pipeline passes it: a dict, validated.
    component.ingest(dataset, report, config={"local": {"dir": str(folder)}}, source="local",
                     data_version="v1")
    assert list(read_labels(dataset.path).imdb_id) == ["tt0000001"]
    assert json.loads((tmp_path / "report.json").read_text())["n_posters"] == 1
    assert {k: dataset.metadata[k] for k in ("source", "posters", "data_version")} == {
        "source": "local", "posters": 1, "data_version": "v1"}
    # ... and the rest of its lineage (tests/test_lineage.py checks the values).
    assert {"git_commit", "params_hash", "image"} <= set(dataset.metadata)


def test_no_parameter_carries_a_credential():
    names = set(inspect.signature(component.ingest).parameters)
    assert "data_version" in names
    assert not {n for n in names if any(w in n for w in ("key", "token", "secret", "password"))}


def test_a_bad_setting_fails_before_anything_is_written(tmp_path):
    import pytest

    dataset, report = _artifact(tmp_path / "dataset"), _artifact(tmp_path / "report.json")
    with pytest.raises(ValueError, match=r"ingest\.demo\.n_postres: unknown setting"):
        component.ingest(dataset, report, config={"demo": {"n_postres": 10}})
    assert not (tmp_path / "dataset").exists()
