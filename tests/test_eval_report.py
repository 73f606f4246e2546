"""evaluate on a really trained (tiny) model: thresholds from validation only, the
comparison with the registry's blessed model, and the HTML report in a real browser."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from postergenre.configs import EvaluateConfig, GateConfig
from postergenre.data.images import encode_jpeg
from postergenre.data.shards import PosterRecord, iter_records, read_manifest, write_shards
from postergenre.evaluation.evaluate import evaluate_models
from postergenre.evaluation.gate import gate
from postergenre.evaluation.metrics import BASELINES
from postergenre.evaluation.report import SECTIONS
from postergenre.evaluation.styles import MODEL_COLOURS
from postergenre.lineage import code_commit
from postergenre.serving.registry import register
from tests.helpers import train_tiny

# Margins of -1 bless any model: for tests about the registry, not the model.
ANYTHING_GOES = GateConfig(min_f1_micro_margin=-1.0, min_map_margin=-1.0,
                           max_hamming_loss_increase=1.0, genres_per_movie_band=100.0)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _evaluate(prepared, model, out, registry=None):
    evaluate_models(prepared, {"scratch": model}, out,
                    EvaluateConfig(bootstrap_resamples=20, report_posters=4), registry=registry,
                    data_version="0123abcd.dir", data_source="demo")
    return {name: json.loads((out / f"{name}.json").read_text())
            for name in ("metrics", "per_genre", "bootstrap", "thresholds")}


@pytest.fixture(scope="module")
def evaluated(tiny_prepared, tmp_path_factory):
    work = tmp_path_factory.mktemp("evaluated")
    model = train_tiny(tiny_prepared, work / "model")
    return work, model, _evaluate(tiny_prepared, model, work / "first")


@pytest.mark.slow
def test_every_scorer_and_file_is_written(evaluated):
    work, _, result = evaluated
    assert set(result["metrics"]) == {"scratch", "null", "most_frequent", "top3"}
    assert result["metrics"]["null"]["f1_micro"] == 0
    assert result["bootstrap"]["reference"] is None  # empty registry: nothing to compare
    ci = result["bootstrap"]["intervals"]["scratch"]["map_macro"]
    # The estimate is the full test split's value; a percentile interval from 20 resamples
    # of ~50 movies need not contain it (resampled AP is biased), so only its order.
    assert ci["estimate"] == pytest.approx(result["metrics"]["scratch"]["map_macro"])
    assert ci["low"] < ci["high"]
    assert set(result["thresholds"]["scratch"]["per_genre"]) >= {"Drama", "Western"}
    # The page says what the data was and where the numbers come from, and that the
    # scratch CNN's filters were learned.
    page = (work / "first" / "evaluation.html").read_text()
    provenance = page[page.index('id="provenance"'):page.index('<section id="decision"')]
    assert "synthetic demo posters" in provenance and "0123abcd.dir" in provenance
    assert code_commit()[0] in provenance
    assert "scratch, first conv layer: learned: trained from scratch" in page
    assert "Features learned" not in page
    plots = work / "first" / "plots"
    for name in ("genres/roc_scratch.png", "genres/pr_scratch.png"):
        assert (plots / name).stat().st_size > 0
    for name, models in (("roc.json", {"scratch", "null", "most_frequent", "top3"}),
                         ("pr.json", {"scratch", "top3"}), ("history.json", {"scratch"})):
        rows = json.loads((plots / name).read_text())
        assert {row["model"] for row in rows} >= models, name
        # How each is drawn (the DVC template reads it): the model in its one colour in
        # every file, the baselines grey and dashed.
        drawn = {(row["model"], row["colour"], row["kind"]) for row in rows}
        assert ("scratch", MODEL_COLOURS[0], "model") in drawn, name
        assert all(kind == "baseline" for model, _, kind in drawn if model in BASELINES)


@pytest.mark.slow
def test_thresholds_come_from_validation_not_test(evaluated, tiny_prepared, tmp_path):
    work, model, result = evaluated
    changed = tmp_path / "prepared"
    shutil.copytree(tiny_prepared, changed)
    manifest = read_manifest(changed)
    records = list(iter_records(changed, "test"))
    rng = np.random.default_rng(0)
    # Every test label flipped (and the movies reordered): a different test set's answers.
    flipped = [PosterRecord(encode_jpeg(r["image"]), 1 - r["labels"], r["imdb_id"],
                            r["split"], r["origin"], r["augmentation"]) for r in records]
    rng.shuffle(flipped)
    for name in manifest["shards"]["test"]:
        (changed / name).unlink()
    names = write_shards(flipped, changed, "test", shard_size=10_000)
    manifest["shards"]["test"] = names
    (changed / "manifest.json").write_text(json.dumps(manifest))

    other = _evaluate(changed, model, tmp_path / "out")
    assert other["thresholds"] == result["thresholds"]
    assert other["metrics"]["scratch"]["f1_micro"] != result["metrics"]["scratch"]["f1_micro"]


@pytest.mark.slow
def test_blessed_model_is_rescored_and_compared(evaluated, tiny_prepared, tmp_path):
    work, model, _ = evaluated
    registry = tmp_path / "registry"
    blessing = tmp_path / "blessing.json"
    # Margins of -1 bless the tiny model whatever it learned: this test is about the registry.
    gate(work / "first", tmp_path, ANYTHING_GOES)
    register(blessing, {"scratch": model}, registry)
    result = _evaluate(tiny_prepared, model, tmp_path / "second", registry=registry)
    assert "last_blessed" in result["metrics"]
    assert result["bootstrap"]["reference"] == "last_blessed"
    diff = result["bootstrap"]["differences"]["scratch"]["map_macro"]
    assert diff["low"] == diff["high"] == 0  # the same model, paired on the same movies
    assert gate(tmp_path / "second", tmp_path / "b2", ANYTHING_GOES) == "blessed"
    rules = json.loads((tmp_path / "b2" / "blessing.json").read_text())["rules"]
    assert {"f1_micro_vs_last_blessed", "map_macro_vs_last_blessed"} <= {r["rule"] for r in rules}


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")
def test_report_opens_in_headless_chromium_with_every_section(evaluated, tmp_path):
    """The report a person reads: evaluate's page as the gate writes it again, opening
    with the decision."""
    work, _, _ = evaluated
    first = work / "first"
    report = tmp_path / "report.html"
    gate(first, tmp_path, ANYTHING_GOES)
    # A copy that records its own width once drawn in a 1280 px window: its tables fit.
    measured = tmp_path / "measured.html"
    measured.write_text(report.read_text().replace(
        "</body>", "<script>document.body.dataset.width = "
        "document.documentElement.scrollWidth</script></body>"))
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         "--window-size=1280,900", "--virtual-time-budget=5000",
         f"--user-data-dir={tmp_path / 'profile'}", measured.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    width = re.search(r'data-width="(\d+)"', dom)
    assert width and int(width.group(1)) <= 1280, width
    positions = [dom.find(f'<section id="{section}">') for section in SECTIONS]
    assert -1 not in positions and positions == sorted(positions), positions
    decision = dom[positions[0]:positions[1]]
    assert "BLESSED" in decision and "<code>scratch</code>" in decision
    for text in ("null", "most_frequent", "top3", "Drama", "Grad-CAM", "first conv filters",
                 "last conv filters"):
        assert text in dom
    # Figures: micro curves, 2 per-genre grids, training curves, 2 filter grids, 2 per poster.
    assert dom.count("data:image/png;base64,") >= 6 + 2 * 4


# -- issue 26: the page says what the data was, and where filters come from ---------------


def test_provenance_names_the_data_the_commit_and_a_date_that_is_not_the_clocks(
        monkeypatch):
    from postergenre.evaluation.report import Provenance, _provenance_html

    commit, when = code_commit()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764633600")  # 2025-12-02
    demo = Provenance.of_run("0123abcd.dir", "demo")
    assert (demo.data_version, demo.commit, demo.date, demo.date_from) == (
        "0123abcd.dir", commit, "2025-12-02", "SOURCE_DATE_EPOCH")
    text = _provenance_html(demo)
    assert "synthetic demo posters" in text and "not how well a model reads real" in text
    assert "0123abcd.dir" in text and commit in text and "2025-12-02" in text
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    real = Provenance.of_run("sha256:99", "real")
    assert real == Provenance.of_run("sha256:99", "real")  # a rerun: the same page
    if when is not None:  # a git checkout: the code commit's own date
        import datetime

        day = datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%d")
        assert (real.date, real.date_from) == (day, "the commit's date")
    assert "<b>real posters</b>" in _provenance_html(real)
    assert "not recorded" in _provenance_html(Provenance())


def test_filters_are_labelled_learned_only_when_trained_on_the_posters():
    from postergenre.evaluation.report import filter_origin

    scratch = {"kind": "scratch", "params": {"epochs": 3}}
    random_frozen = {"kind": "transfer", "params": {"weights": "none"}}
    imagenet = {"kind": "transfer", "params": {"weights": "imagenet"}}
    assert filter_origin(True, scratch).startswith("learned: trained from scratch")
    assert filter_origin(False, random_frozen).startswith("random: a randomly initialised")
    assert filter_origin(False, imagenet).startswith("pretrained (imagenet weights) and "
                                                     "frozen: not learned")
    assert filter_origin(True, imagenet) == ("learned: fine-tuned on these posters, from "
                                             "imagenet weights")
    assert filter_origin(True, None).startswith("origin not recorded")


# -- issue 26: each model in one colour in every figure, baselines unlike models --------


def _colour_pixels(png: bytes, colour: str) -> int:
    """How many pixels of a figure are (within antialiasing) `colour`."""
    import cv2

    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image.astype(int) - rgb).max(axis=-1) <= 12).sum())


def test_each_model_keeps_its_colour_in_every_figure_and_baselines_are_grey():
    from postergenre.evaluation.figures import (
        genre_curves_png,
        micro_curves_png,
        training_curves_png,
    )
    from postergenre.evaluation.styles import BASELINE_COLOURS, style_of

    rng = np.random.default_rng(0)
    y = (rng.random((60, 19)) < 0.2).astype(np.uint8)
    models = ["second", "first"]  # params.yaml's order, not the alphabet's
    scores = {name: rng.random((60, 19)) for name in ("first", "top3", "second")}
    history = [{"epoch": e, "loss": 1 / e, "val_loss": 1.2 / e} for e in range(1, 5)]
    figures = {
        "micro": micro_curves_png(y, scores, models),
        # One model's figures only: its colour, whatever else is drawn.
        "history": training_curves_png({"first": history}, models),
        "genres": genre_curves_png(y, scores["first"], "roc", "first",
                                   style_of("first", models).colour),
    }
    first, second = MODEL_COLOURS[1], MODEL_COLOURS[0]
    assert style_of("first", models).colour == first
    for name, png in figures.items():
        assert _colour_pixels(png, first) > 50, name
        assert _colour_pixels(png, MODEL_COLOURS[2]) == 0, name  # no colour of its own
    assert _colour_pixels(figures["micro"], second) > 50
    assert _colour_pixels(figures["history"], second) == 0
    assert _colour_pixels(figures["micro"], BASELINE_COLOURS["top3"]) > 20
    assert style_of("top3", models).line_style == "--"


# -- issue 13: a partial or damaged test set stops evaluate, naming what is wrong ---------


def _small_prepared(folder, n=8):
    """A prepared folder of 8-pixel posters: n records per split, as augment lays it out."""
    image = encode_jpeg(np.zeros((8, 8, 3), np.uint8))
    manifest = {"image_size": 8, "shards": {}, "counts": {}}
    for split in ("train", "validation", "test"):
        records = [PosterRecord(image, np.eye(19, dtype=np.uint8)[i % 19], f"tt{i:07d}",
                                split, f"tt{i:07d}") for i in range(n)]
        manifest["shards"][split] = write_shards(records, folder, split, shard_size=n // 2)
        manifest["counts"][split] = {"movies": n, "augmented": 0, "records": n}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_a_test_shard_cut_to_half_its_records_stops_evaluate(tmp_path):
    import tensorflow as tf

    from postergenre.evaluation.evaluate import read_labels_of_splits

    prepared = _small_prepared(tmp_path / "prepared")
    assert len(read_labels_of_splits(prepared).test_ids) == 8
    shard = prepared / "test-00001.tfrecord"
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(shard))]
    with tf.io.TFRecordWriter(str(shard)) as writer:  # cut at a record boundary
        for record in records[: len(records) // 2]:
            writer.write(record)
    message = (rf"split 'test': the shards hold 6 record\(s\), manifest.json says 8: the "
               rf"shards in {prepared} \(test-00000.tfrecord, test-00001.tfrecord\)")
    with pytest.raises(ValueError, match=message):
        read_labels_of_splits(prepared)
    with pytest.raises(ValueError, match=message):  # before any model is loaded
        evaluate_models(prepared, {"scratch": tmp_path / "no-model"}, tmp_path / "out")


def test_a_bit_flipped_shard_is_named(tmp_path):
    from postergenre.data.shards import ShardReadError, labels_of
    from postergenre.evaluation.evaluate import read_labels_of_splits

    prepared = _small_prepared(tmp_path / "prepared")
    shard = prepared / "validation-00001.tfrecord"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x10
    shard.write_bytes(bytes(data))
    for read in (lambda: labels_of(prepared, "validation"),
                 lambda: list(iter_records(prepared, "validation")),
                 lambda: read_labels_of_splits(prepared)):
        with pytest.raises(ShardReadError, match=rf"{shard}: corrupted record at \d+"):
            read()
