"""The gate's rules on crafted metrics, and the registry's write-once promise."""

import json

import pytest

from postergenre.configs import GateConfig
from postergenre.evaluation.gate import BLESSED, REJECTED
from postergenre.evaluation.gate import gate as gate_with_config
from postergenre.genres import GENRES
from postergenre.serving.registry import LATEST_FILE, register

# Crafted test metrics: 2 true genres per movie; each scorer predicts `genres_per_movie`.
CARD = {"genres_per_movie": 2.0, "true_genres_per_movie": 2.0}
NULL = {"f1_micro": 0.0, "map_macro": 0.12, "hamming_loss": 0.12, "genres_per_movie": 0.0,
        "true_genres_per_movie": 2.0}
TOP1 = {"f1_micro": 0.3, "map_macro": 0.12, "hamming_loss": 0.13, "genres_per_movie": 1.0,
        "true_genres_per_movie": 2.0}
TOP3 = {"f1_micro": 0.35, "map_macro": 0.12, "hamming_loss": 0.2, "genres_per_movie": 3.0,
        "true_genres_per_movie": 2.0}
BASE = {"null": NULL, "most_frequent": TOP1, "top3": TOP3}


def gate(metrics_path, **settings):
    """The gate with settings as keywords (a GateConfig) on the evaluation folder that
    holds `metrics_path`; the blessing goes into the same folder."""
    return gate_with_config(metrics_path.parent, metrics_path.parent, GateConfig(**settings))


def _write(tmp_path, metrics):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics))
    return path


def _blessing(tmp_path, metrics, **settings):
    decision = gate(_write(tmp_path, metrics), **settings)
    return decision, json.loads((tmp_path / "blessing.json").read_text())


def test_clearly_better_model_is_blessed(tmp_path):
    good = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.1, **CARD}
    decision, blessing = _blessing(tmp_path, {"scratch": good, **BASE})
    assert decision == BLESSED and blessing["model"] == "scratch"
    assert all(rule["passed"] for rule in blessing["rules"])
    assert {r["rule"] for r in blessing["rules"]} == {
        "f1_micro_over_null", "map_macro_over_null", "f1_micro_over_most_frequent",
        "map_macro_over_most_frequent", "f1_micro_over_top3", "map_macro_over_top3",
        "hamming_loss_not_above_top3", "genres_per_movie_at_least", "genres_per_movie_at_most",
        "f1_micro_floor", "map_macro_floor", "first_blessing"}
    first = next(r for r in blessing["rules"] if r["rule"] == "first_blessing")
    assert first["passed"] and "first run" in first["note"]


def test_model_equal_to_null_is_rejected_naming_the_rules(tmp_path):
    decision, blessing = _blessing(tmp_path, {"scratch": dict(NULL), **BASE})
    assert decision == REJECTED and blessing["model"] is None
    failed = " ".join(blessing["failed_rules"])
    assert "f1_micro_over_null" in failed and "map_macro_over_null" in failed
    # Predicting no genre has the lowest Hamming loss, and still fails the gate.
    assert "hamming_loss_not_above_top3" not in failed
    assert "genres_per_movie_at_least" in failed


def test_predicting_the_most_frequent_genre_is_not_enough(tmp_path):
    """Beating the null model on F1 is easy on skewed labels; the top-1 baseline is not."""
    copycat = {"f1_micro": 0.32, "map_macro": 0.2, "hamming_loss": 0.11, **CARD}
    decision, blessing = _blessing(tmp_path, {"scratch": copycat, **BASE})
    assert decision == REJECTED
    assert [r["rule"] for r in blessing["rules"] if not r["passed"]] == [
        "f1_micro_over_most_frequent", "f1_micro_over_top3"]


def test_missing_baseline_fails_closed(tmp_path):
    good = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.1, **CARD}
    decision, blessing = _blessing(tmp_path, {"scratch": good, "null": NULL, "top3": TOP3})
    assert decision == REJECTED
    assert any("most_frequent" in line for line in blessing["failed_rules"])


def test_top3_baseline_has_its_own_margin(tmp_path):
    near_top3 = {"f1_micro": 0.38, "map_macro": 0.4, "hamming_loss": 0.1, **CARD}
    decision, blessing = _blessing(tmp_path, {"scratch": near_top3, **BASE})
    assert decision == REJECTED
    assert [r["rule"] for r in blessing["rules"] if not r["passed"]] == ["f1_micro_over_top3"]


def test_value_floors(tmp_path):
    good = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.1, **CARD}
    decision, blessing = _blessing(tmp_path, {"scratch": good, **BASE}, min_map_macro=0.45)
    assert decision == REJECTED
    assert [r["rule"] for r in blessing["rules"] if not r["passed"]] == ["map_macro_floor"]


def test_worse_hamming_loss_than_top3_alone_rejects(tmp_path):
    noisy = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.25, **CARD}
    decision, blessing = _blessing(tmp_path, {"scratch": noisy, **BASE})
    assert decision == REJECTED
    assert blessing["failed_rules"] == [
        "scratch: hamming_loss_not_above_top3 failed (0.25 <= 0.2 is false)"]


@pytest.mark.parametrize(("predicted", "rule"), [(0.9, "genres_per_movie_at_least"),
                                                 (4.5, "genres_per_movie_at_most")])
def test_too_few_or_too_many_genres_per_movie_rejects(tmp_path, predicted, rule):
    model = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.1,
             "genres_per_movie": predicted, "true_genres_per_movie": 2.0}
    decision, blessing = _blessing(tmp_path, {"scratch": model, **BASE})
    assert decision == REJECTED
    assert [r["rule"] for r in blessing["rules"] if not r["passed"]] == [rule]
    # A wider band lets it through.
    assert _blessing(tmp_path, {"scratch": model, **BASE}, genres_per_movie_band=3.0)[0] \
        == BLESSED


@pytest.mark.parametrize("bad", [None, float("nan"), "missing"])
def test_missing_or_nan_metric_fails_closed(tmp_path, bad):
    model = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.1, **CARD}
    if bad == "missing":
        del model["map_macro"]
    else:
        model["map_macro"] = bad
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"scratch": model, **BASE}))
    assert gate(path) == REJECTED


def test_best_passing_model_is_chosen(tmp_path):
    metrics = {
        "scratch": {"f1_micro": 0.5, "map_macro": 0.30, "hamming_loss": 0.1, **CARD},
        "vgg16": {"f1_micro": 0.4, "map_macro": 0.35, "hamming_loss": 0.1, **CARD},
        "broken": {"f1_micro": 0.9, "map_macro": 0.9, "hamming_loss": 0.5, **CARD},
        **BASE,
    }
    decision, blessing = _blessing(tmp_path, metrics)
    assert decision == BLESSED and blessing["model"] == "vgg16"


def test_margins_are_parameters(tmp_path):
    model = {"f1_micro": 0.5, "map_macro": 0.2, "hamming_loss": 0.1, **CARD}
    assert _blessing(tmp_path, {"m": model, **BASE})[0] == BLESSED
    assert _blessing(tmp_path, {"m": model, **BASE}, min_map_margin=0.1)[0] == REJECTED


def test_gate_needs_a_model(tmp_path):
    with pytest.raises(ValueError, match="no model to gate"):
        gate(_write(tmp_path, {**BASE}))


GOOD = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.1, **CARD}


def _with_blessed(tmp_path, f1_low, map_low, **settings):
    """A candidate, the baselines and the last blessed model, with bootstrap differences."""
    metrics = {"scratch": GOOD, **BASE, "last_blessed": GOOD}
    boot = {"reference_entry": "scratch-abc", "differences": {"scratch": {
        "f1_micro": {"estimate": 0.0, "low": f1_low, "high": 0.1},
        "map_macro": {"estimate": 0.0, "low": map_low, "high": 0.1}}}}
    (tmp_path / "bootstrap.json").write_text(json.dumps(boot))
    decision = gate(_write(tmp_path, metrics), **settings)
    return decision, json.loads((tmp_path / "blessing.json").read_text())


def test_worse_than_last_blessed_beyond_epsilon_is_rejected(tmp_path):
    decision, blessing = _with_blessed(tmp_path, f1_low=-0.01, map_low=-0.08, epsilon=0.05)
    assert decision == REJECTED
    assert [r["rule"] for r in blessing["rules"] if not r["passed"]] == [
        "map_macro_vs_last_blessed"]
    assert "first_blessing" not in {r["rule"] for r in blessing["rules"]}


def test_within_epsilon_of_last_blessed_passes_and_records_the_reference(tmp_path):
    decision, blessing = _with_blessed(tmp_path, f1_low=-0.04, map_low=-0.03, epsilon=0.05)
    assert decision == BLESSED and blessing["compared_with"] == "scratch-abc"
    rule = next(r for r in blessing["rules"] if r["rule"] == "map_macro_vs_last_blessed")
    assert rule["value"] == -0.03 and rule["threshold"] == -0.05
    assert rule["baseline"] == "last_blessed"


def test_blessed_model_without_bootstrap_fails_closed(tmp_path):
    metrics = {"scratch": GOOD, **BASE, "last_blessed": GOOD}
    assert gate(_write(tmp_path, metrics)) == REJECTED
    blessing = json.loads((tmp_path / "blessing.json").read_text())
    assert any("f1_micro_vs_last_blessed" in line for line in blessing["failed_rules"])


def _per_genre(ap_scratch, ap_blessed):
    from postergenre.genres import GENRES

    def rows(ap):
        return {g: {"support": 0 if g == "Western" else 5, "ap": None if g == "Western" else ap}
                for g in GENRES}
    return {"scratch": rows(ap_scratch), "last_blessed": rows(ap_blessed)}


def test_per_genre_floors_and_maximum_regression(tmp_path):
    (tmp_path / "per_genre.json").write_text(json.dumps(_per_genre(0.30, 0.42)))
    decision, blessing = _with_blessed(tmp_path, 0.0, 0.0,
                                       genre_ap_floors={"Drama": 0.35}, max_genre_ap_drop=0.1)
    assert decision == REJECTED
    failed = {r["rule"] for r in blessing["rules"] if not r["passed"]}
    assert "ap_floor_Drama" in failed and "ap_drop_Drama_vs_last_blessed" in failed
    assert "ap_drop_Western_vs_last_blessed" not in {r["rule"] for r in blessing["rules"]}
    # Within the allowed drop and above the floor: blessed.
    decision, _ = _with_blessed(tmp_path, 0.0, 0.0,
                                genre_ap_floors={"Drama": 0.25}, max_genre_ap_drop=0.15)
    assert decision == BLESSED


def test_floor_on_a_genre_without_test_examples_fails_closed(tmp_path):
    (tmp_path / "per_genre.json").write_text(json.dumps(_per_genre(0.5, 0.5)))
    decision, blessing = _with_blessed(tmp_path, 0.0, 0.0,
                                       genre_ap_floors={"Western": 0.1})
    assert decision == REJECTED and "ap_floor_Western" in blessing["failed_rules"][0]


def test_unknown_genre_floor_is_named(tmp_path):
    with pytest.raises(ValueError, match="Cartoon"):
        gate(_write(tmp_path, {"scratch": GOOD, **BASE}),
             genre_ap_floors={"Cartoon": 0.1})


def test_thresholds_travel_with_the_blessing_into_the_registry(tmp_path):
    thresholds = {"scratch": {"global": 0.4, "per_genre": {"Drama": 0.3}}}
    (tmp_path / "thresholds.json").write_text(json.dumps(thresholds))
    gate(_write(tmp_path, {"scratch": GOOD, **BASE}))
    entry = register(tmp_path / "blessing.json", {"scratch": _model_dir(tmp_path, "m", b"x")},
                     tmp_path / "reg", data_version="abc123")
    assert json.loads((entry / "thresholds.json").read_text()) == thresholds["scratch"]
    latest = json.loads((tmp_path / "reg" / LATEST_FILE).read_text())
    assert latest["data_version"] == "abc123" and latest["metrics"] == GOOD
    assert latest["uri"].endswith(entry.name)


def _model_dir(tmp_path, name, content):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.keras").write_bytes(content)
    return folder


def test_registry_is_write_once_with_latest_pointer(tmp_path):
    registry = tmp_path / "registry"
    good = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.1, **CARD}
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


# -- issue 13: verified entries, agreeing pointers, race-safe registers -----------------

THRESHOLDS = {"global": 0.4, "per_genre": dict.fromkeys(GENRES, 0.3)}


def _blessed(tmp_path, thresholds=True):
    """A blessing of `scratch` (with per-genre thresholds unless told otherwise)."""
    if thresholds:
        (tmp_path / "thresholds.json").write_text(json.dumps({"scratch": THRESHOLDS}))
    gate(_write(tmp_path, {"scratch": GOOD, **BASE}))
    return tmp_path / "blessing.json"


def test_a_swapped_or_lost_file_of_an_entry_is_refused_on_load(tmp_path):
    from postergenre.serving.batch_predict import resolve_model
    from postergenre.serving.predict import load_predictor
    from postergenre.serving.registry import RegistryIntegrityError, fetch_latest

    registry = tmp_path / "reg"
    entry = register(_blessed(tmp_path), {"scratch": _model_dir(tmp_path, "m", b"good")},
                     registry)
    info = json.loads((entry / "entry.json").read_text())
    assert set(info["files"]) == {"model/model.keras", "thresholds.json"}
    assert fetch_latest(registry) == entry  # intact: accepted

    (entry / "model" / "model.keras").write_bytes(b"evil")  # swapped after registering
    for load in (lambda: fetch_latest(registry), lambda: resolve_model(registry),
                 lambda: resolve_model(entry), lambda: load_predictor(entry / "model"),
                 lambda: load_predictor(registry=registry)):
        with pytest.raises(RegistryIntegrityError,
                           match=rf"{entry}: .*model/model\.keras changed"):
            load()
    (entry / "model" / "model.keras").write_bytes(b"good")
    (entry / "thresholds.json").unlink()
    with pytest.raises(RegistryIntegrityError, match="thresholds.json missing"):
        fetch_latest(registry)


def test_an_entry_without_thresholds_is_an_error_when_served_not_a_silent_half(tmp_path):
    from postergenre.serving.batch_predict import load_thresholds, resolve_model
    from postergenre.serving.predict import load_predictor
    from postergenre.serving.registry import RegistryError

    registry = tmp_path / "reg"
    entry = register(_blessed(tmp_path, thresholds=False),
                     {"scratch": _model_dir(tmp_path, "m", b"x")}, registry)
    _, found = resolve_model(registry)
    with pytest.raises(RegistryError, match=rf"{entry}: registry entry has no per-genre"):
        load_thresholds(found)
    with pytest.raises(RegistryError, match="no per-genre thresholds"):
        load_predictor(registry=registry)


def test_an_entry_without_recorded_hashes_is_refused(tmp_path):
    from postergenre.serving.registry import RegistryIntegrityError, fetch_latest

    registry = tmp_path / "reg"
    entry = register(_blessed(tmp_path), {"scratch": _model_dir(tmp_path, "m", b"x")},
                     registry)
    info = json.loads((entry / "entry.json").read_text())
    del info["files"]  # as entries were written before they were verified
    (entry / "entry.json").write_text(json.dumps(info))
    with pytest.raises(RegistryIntegrityError, match="records no file hashes"):
        fetch_latest(registry)


def test_another_data_version_is_a_new_entry_and_latest_agrees_with_it(tmp_path):
    registry = tmp_path / "reg"
    blessing = _blessed(tmp_path)
    model = _model_dir(tmp_path, "m", b"same bytes")
    first = register(blessing, {"scratch": model}, registry, data_version="v1")
    second = register(blessing, {"scratch": model}, registry, data_version="v2")
    assert first != second  # the same model on other data: its own entry
    for entry, version in ((first, "v1"), (second, "v2")):
        assert json.loads((entry / "entry.json").read_text())["data_version"] == version
    latest = json.loads((registry / LATEST_FILE).read_text())
    info = json.loads((second / "entry.json").read_text())
    assert (latest["entry"], latest["data_version"]) == (second.name, "v2")
    assert (latest["data_version"], latest["metrics"]) == (
        info["data_version"], info["blessing"]["metrics"])
    # The same model, thresholds and data version again: the same entry (idempotent).
    assert register(blessing, {"scratch": model}, registry, data_version="v1") == first
    assert json.loads((registry / LATEST_FILE).read_text())["data_version"] == "v1"


def test_two_concurrent_registers_of_the_same_entry_both_succeed(tmp_path, monkeypatch):
    import threading

    from postergenre.serving import registry as reg

    blessing = _blessed(tmp_path)
    model = _model_dir(tmp_path, "m", b"x" * 1000)
    both_staged = threading.Barrier(2, timeout=20)
    stage = reg._stage_entry

    def stage_then_wait(*args, **kwargs):
        stage(*args, **kwargs)
        both_staged.wait()  # both renames race for the same entry name

    monkeypatch.setattr(reg, "_stage_entry", stage_then_wait)
    results, errors = [], []

    def one():
        try:
            results.append(register(blessing, {"scratch": model}, tmp_path / "reg"))
        except BaseException as err:  # noqa: BLE001 - the test reports it
            errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(results) == 2 and results[0] == results[1]
    assert sorted(p.name for p in (tmp_path / "reg").iterdir()) == sorted(
        [LATEST_FILE, "history.jsonl", results[0].name])  # one entry, no staging left
    # One change of latest, recorded once: the second register found it there.
    assert [h["entry"] for h in reg.read_history(tmp_path / "reg")] == [results[0].name]
    assert reg.verify_entry(results[0])["entry"] == results[0].name


def test_a_failed_register_leaves_no_staging_and_says_so_in_one_line(tmp_path, monkeypatch):
    from postergenre.serving import registry as reg

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(reg.shutil, "copytree", full_disk)
    with pytest.raises(reg.RegistryError, match="cannot write the entry .No space left"):
        register(_blessed(tmp_path), {"scratch": _model_dir(tmp_path, "m", b"x")},
                 tmp_path / "reg")
    assert list((tmp_path / "reg").iterdir()) == []


def test_a_rerun_removes_the_staging_folders_of_killed_registers(tmp_path):
    import os
    import subprocess
    import time

    from postergenre.serving import registry as reg

    registry = tmp_path / "reg"
    registry.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid is free now: the "killed register"
    host = reg._host()
    dead = registry / f".scratch-{'a' * 16}.staging.{gone.pid}.{host}.k1ll3d00"
    live = registry / f".scratch-{'b' * 16}.staging.{os.getpid()}.{host}.l1v3l1v3"
    old_style = registry / f".scratch-{'c' * 16}.abcd1234"  # before pids were in the name
    recent_old_style = registry / f".scratch-{'d' * 16}.efgh5678"
    for folder in (dead, live, old_style, recent_old_style):
        (folder / "model").mkdir(parents=True)
        (folder / "model" / "model.keras").write_bytes(b"half")
    week_ago = time.time() - 7 * 24 * 3600
    os.utime(old_style, (week_ago, week_ago))

    register(_blessed(tmp_path), {"scratch": _model_dir(tmp_path, "m", b"x")}, registry)
    left = {p.name for p in registry.iterdir() if p.name.startswith(".")}
    assert left == {live.name, recent_old_style.name}  # a live register is never touched


def test_registry_outputs_are_readable_by_others(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        entry = register(_blessed(tmp_path), {"scratch": _model_dir(tmp_path, "m", b"x")},
                         tmp_path / "reg")
    finally:
        os.umask(old)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o755
    for name in ("entry.json", "thresholds.json", "model/model.keras"):
        assert stat.S_IMODE((entry / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE((tmp_path / "reg" / LATEST_FILE).stat().st_mode) == 0o644


# -- issue 10: the report a person reads opens with the gate's decision -----------------


def _page(tmp_path):
    from postergenre.evaluation.report import DECISION_END, DECISION_START

    page = tmp_path / "evaluation.html"
    page.write_text(f"<html><body><h1>x</h1><section id='decision'>{DECISION_START}"
                    f"<p>Not judged yet</p>{DECISION_END}</section>"
                    "<section id='headline'>table</section></body></html>")
    return page


def test_report_opens_with_the_rejection_and_the_rules_that_failed(tmp_path):
    page = _page(tmp_path)
    gate(_write(tmp_path, {"scratch": dict(NULL), **BASE}))
    report = (tmp_path / "report.html").read_text()
    assert "Not judged yet" not in report and "Not judged yet" in page.read_text()
    decision = report[report.index("id='decision'"):report.index("id='headline'")]
    assert "REJECTED" in decision and "f1_micro_over_null failed" in decision


def test_report_of_a_blessing_names_the_model_and_its_served_thresholds(tmp_path):
    thresholds = {"scratch": {"global": 0.4, "per_genre": {"Drama": 0.31, "Western": 0.07}}}
    (tmp_path / "thresholds.json").write_text(json.dumps(thresholds))
    _page(tmp_path)
    gate(_write(tmp_path, {"scratch": GOOD, **BASE}))
    report = (tmp_path / "report.html").read_text()
    assert "BLESSED" in report and "<code>scratch</code>" in report
    assert "<th>Western</th>" in report and "<td>0.07</td>" in report
    assert "Every rule passed" in report


def test_a_page_without_the_placeholder_is_named_and_the_blessing_is_kept(tmp_path):
    (tmp_path / "evaluation.html").write_text("<html><body>an old page</body></html>")
    with pytest.raises(ValueError, match="evaluation.html: no gate-decision placeholder"):
        gate(_write(tmp_path, {"scratch": GOOD, **BASE}))
    assert json.loads((tmp_path / "blessing.json").read_text())["decision"] == BLESSED
    assert not (tmp_path / "report.html").exists()


def test_without_evaluates_page_the_blessing_is_written_and_no_report(tmp_path):
    evaluation, out = tmp_path / "evaluation", tmp_path / "out"
    evaluation.mkdir()
    _write(evaluation, {"scratch": GOOD, **BASE})
    assert gate_with_config(evaluation, out, GateConfig()) == BLESSED
    assert sorted(p.name for p in out.iterdir()) == ["blessing.json"]


# -- issue 24: latest.json and an entry's files are checked, not followed ------------------


def test_latest_json_naming_anything_but_an_entry_of_the_registry_is_refused(tmp_path,
                                                                            capsys):
    import shutil

    from postergenre.cli import main
    from postergenre.serving.registry import RegistryIntegrityError, fetch_latest

    registry = tmp_path / "reg"
    entry = register(_blessed(tmp_path), {"scratch": _model_dir(tmp_path, "m", b"good")},
                     registry)
    # A whole, verified entry outside the registry, and latest.json pointing at it.
    shutil.copytree(entry, tmp_path / "outside" / entry.name)
    latest = json.loads((registry / LATEST_FILE).read_text())
    (registry / LATEST_FILE).write_text(json.dumps({**latest,
                                                    "entry": f"../outside/{entry.name}"}))
    with pytest.raises(RegistryIntegrityError,
                       match=rf"{registry}/latest\.json: 'entry' is '\.\./outside/"):
        fetch_latest(registry)
    (registry / LATEST_FILE).write_text("{not json")
    with pytest.raises(RegistryIntegrityError, match=rf"{registry}/latest\.json: not JSON"):
        fetch_latest(registry)
    assert main(["predict", str(tmp_path / "poster.jpg"), "--registry", str(registry)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"postergenre predict: error: {registry}/latest.json: not JSON (")


def test_a_symlink_or_fifo_added_to_an_entry_is_refused_never_followed(tmp_path):
    import os

    from postergenre.serving.registry import RegistryIntegrityError, fetch_latest

    registry = tmp_path / "reg"
    entry = register(_blessed(tmp_path), {"scratch": _model_dir(tmp_path, "m", b"good")},
                     registry)
    (entry / "model" / "extra.keras").symlink_to(tmp_path / "not-there-yet.keras")
    with pytest.raises(RegistryIntegrityError, match=r"model/extra\.keras added as a symlink"):
        fetch_latest(registry)
    (entry / "model" / "extra.keras").unlink()
    os.mkfifo(entry / "model" / "pipe")  # opened to be hashed, it would block the read
    with pytest.raises(RegistryIntegrityError, match="model/pipe added as not a regular file"):
        fetch_latest(registry)
    (entry / "model" / "pipe").unlink()
    # A registered file swapped for a symlink to the same bytes is a change too.
    keras = entry / "model" / "model.keras"
    (tmp_path / "same.keras").write_bytes(keras.read_bytes())
    keras.unlink()
    keras.symlink_to(tmp_path / "same.keras")
    with pytest.raises(RegistryIntegrityError,
                       match=r"model/model\.keras changed into a symlink"):
        fetch_latest(registry)


# -- issue 26: the decision card (Kubeflow's Markdown viewer) ------------------------------


def test_decision_card_says_the_decision_the_model_and_its_metrics_beside_the_baselines(
        tmp_path):
    from postergenre.evaluation.report import CARD_FAILED_RULES, decision_markdown

    metrics = {"scratch": GOOD, **BASE}
    _, blessing = _blessing(tmp_path, metrics)
    card = decision_markdown(blessing, metrics)
    lines = card.splitlines()
    assert lines[0] == "## Gate: BLESSED `scratch`"
    assert lines[2].startswith("`scratch` is the model to serve:") and "rules pass" in lines[2]
    assert "| **scratch** (blessed) | 0.400 | n/a | 0.500 |" in card
    assert "| null *(baseline)* | 0.120 |" in card and "| top3 *(baseline)* |" in card
    assert "no blessed model: nothing to compare with" in card

    bad = {"a": dict(NULL), "b": dict(NULL), **BASE}
    _, rejected = _blessing(tmp_path, bad)
    card = decision_markdown(rejected, bad)
    assert card.startswith("## Gate: REJECTED\n") and "nothing is registered" in card
    failed = rejected["failed_rules"]
    assert len(failed) > CARD_FAILED_RULES
    assert f"Rules that failed ({len(failed)}):" in card and f"- {failed[0]}" in card
    assert f"... and {len(failed) - CARD_FAILED_RULES} more" in card
