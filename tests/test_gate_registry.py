"""The gate's rules on crafted metrics, and the registry's write-once promise."""

import json

import pytest

from postergenre.gate import BLESSED, REJECTED, gate
from postergenre.registry import LATEST_FILE, register

NULL = {"f1_micro": 0.0, "map_macro": 0.12, "hamming_loss": 0.12}
TOP1 = {"f1_micro": 0.3, "map_macro": 0.12, "hamming_loss": 0.13}
BASE = {"null": NULL, "most_frequent": TOP1}


def _write(tmp_path, metrics):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics))
    return path


def _blessing(tmp_path, metrics, **settings):
    decision = gate(_write(tmp_path, metrics), tmp_path / "blessing.json", **settings)
    return decision, json.loads((tmp_path / "blessing.json").read_text())


def test_clearly_better_model_is_blessed(tmp_path):
    good = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.1}
    decision, blessing = _blessing(tmp_path, {"scratch": good, **BASE})
    assert decision == BLESSED and blessing["model"] == "scratch"
    assert all(rule["passed"] for rule in blessing["rules"])
    assert {r["rule"] for r in blessing["rules"]} == {
        "f1_micro_over_null", "map_macro_over_null", "f1_micro_over_most_frequent",
        "map_macro_over_most_frequent", "hamming_loss_not_above_null"}


def test_model_equal_to_null_is_rejected_naming_the_rules(tmp_path):
    decision, blessing = _blessing(tmp_path, {"scratch": dict(NULL), **BASE})
    assert decision == REJECTED and blessing["model"] is None
    failed = " ".join(blessing["failed_rules"])
    assert "f1_micro_over_null" in failed and "map_macro_over_null" in failed
    assert "hamming_loss_not_above_null" not in failed


def test_predicting_the_most_frequent_genre_is_not_enough(tmp_path):
    """Beating the null model on F1 is easy on skewed labels; the top-1 baseline is not."""
    copycat = {"f1_micro": 0.32, "map_macro": 0.2, "hamming_loss": 0.11}
    decision, blessing = _blessing(tmp_path, {"scratch": copycat, **BASE})
    assert decision == REJECTED
    assert [r["rule"] for r in blessing["rules"] if not r["passed"]] == [
        "f1_micro_over_most_frequent"]


def test_missing_baseline_fails_closed(tmp_path):
    good = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.1}
    decision, blessing = _blessing(tmp_path, {"scratch": good, "null": NULL})
    assert decision == REJECTED
    assert any("most_frequent" in line for line in blessing["failed_rules"])


def test_worse_hamming_loss_alone_rejects(tmp_path):
    noisy = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.2}
    decision, blessing = _blessing(tmp_path, {"scratch": noisy, **BASE})
    assert decision == REJECTED
    assert blessing["failed_rules"] == [
        "scratch: hamming_loss_not_above_null failed (0.2 <= 0.12 is false)"]


@pytest.mark.parametrize("bad", [None, float("nan"), "missing"])
def test_missing_or_nan_metric_fails_closed(tmp_path, bad):
    model = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.1}
    if bad == "missing":
        del model["map_macro"]
    else:
        model["map_macro"] = bad
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"scratch": model, **BASE}))
    assert gate(path, tmp_path / "b.json") == REJECTED


def test_best_passing_model_is_chosen(tmp_path):
    metrics = {
        "scratch": {"f1_micro": 0.5, "map_macro": 0.30, "hamming_loss": 0.1},
        "vgg16": {"f1_micro": 0.4, "map_macro": 0.35, "hamming_loss": 0.1},
        "broken": {"f1_micro": 0.9, "map_macro": 0.9, "hamming_loss": 0.5},
        **BASE,
    }
    decision, blessing = _blessing(tmp_path, metrics)
    assert decision == BLESSED and blessing["model"] == "vgg16"


def test_margins_are_parameters(tmp_path):
    model = {"f1_micro": 0.5, "map_macro": 0.2, "hamming_loss": 0.1}
    assert _blessing(tmp_path, {"m": model, **BASE})[0] == BLESSED
    assert _blessing(tmp_path, {"m": model, **BASE}, min_map_margin=0.1)[0] == REJECTED


def test_gate_needs_a_model(tmp_path):
    with pytest.raises(ValueError, match="no model to gate"):
        gate(_write(tmp_path, {**BASE}), tmp_path / "b.json")


def _model_dir(tmp_path, name, content):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.keras").write_bytes(content)
    return folder


def test_registry_is_write_once_with_latest_pointer(tmp_path):
    registry = tmp_path / "registry"
    good = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.1}
    _blessing(tmp_path, {"scratch": good, **BASE})
    first_model = _model_dir(tmp_path, "one", b"first")
    first = register(tmp_path / "blessing.json", {"scratch": first_model}, registry)
    latest = json.loads((registry / LATEST_FILE).read_text())
    assert (registry / latest["path"] / "model.keras").read_bytes() == b"first"

    second_model = _model_dir(tmp_path, "two", b"second")
    second = register(tmp_path / "blessing.json", {"scratch": second_model}, registry)
    assert second != first
    assert (first / "model" / "model.keras").read_bytes() == b"first"  # never overwritten
    latest = json.loads((registry / LATEST_FILE).read_text())
    assert (registry / latest["path"] / "model.keras").read_bytes() == b"second"
    # Registering the same bytes again reuses the entry.
    assert register(tmp_path / "blessing.json", {"scratch": second_model}, registry) == second
    assert not [p for p in registry.iterdir() if p.name.startswith(".")]


def test_rejected_blessing_registers_nothing(tmp_path):
    _blessing(tmp_path, {"scratch": dict(NULL), **BASE})
    model = _model_dir(tmp_path, "m", b"x")
    assert register(tmp_path / "blessing.json", {"scratch": model}, tmp_path / "reg") is None
    assert list((tmp_path / "reg").iterdir()) == []
