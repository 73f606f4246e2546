"""Progress of long work (postergenre.progress): a bar on a terminal, plain lines when
stderr is piped (CI, `| tee`, a log file, a Kubeflow pod's log), decided one way for all.

The per-epoch lines of a real training with stderr piped are in test_train_resume.py."""

from __future__ import annotations

import io
import os
import re
import select
import sys

import pytest

from postergenre.progress import Progress, on_terminal, track


def _terminal() -> tuple[int, io.TextIOWrapper]:
    """A pseudo-terminal: (its master side to read, a text stream writing to it)."""
    master, slave = os.openpty()
    return master, io.TextIOWrapper(os.fdopen(slave, "wb", buffering=0), write_through=True)


def _read(master: int) -> str:
    chunks = []
    while select.select([master], [], [], 0)[0]:
        chunks.append(os.read(master, 65536))
    return b"".join(chunks).decode(errors="replace")


def test_piped_work_prints_a_plain_line_per_tenth():
    stream = io.StringIO()
    assert not on_terminal(stream)
    with Progress("augment train", 25, "poster", stream=stream, interval=0) as progress:
        for _ in range(25):
            progress.update()
    lines = stream.getvalue().splitlines()
    assert 1 < len(lines) <= 10
    percents = []
    for line in lines:
        found = re.fullmatch(r"augment train: (\d+)/25 posters \((\d+)%, \d+\.\d s\)", line)
        assert found, line
        percents.append(int(found[2]))
    assert percents == sorted(set(percents)) and percents[-1] == 100
    assert "\r" not in stream.getvalue()


def test_piped_steps_print_a_line_each_with_their_values():
    stream = io.StringIO()
    progress = Progress("train cnn", 3, "epoch", initial=1, every_step=True, stream=stream,
                        interval=0)
    progress.update(1, {"loss": "0.6931", "val_loss": "0.6900"})
    progress.update(1, {"": "done"})
    lines = stream.getvalue().splitlines()
    assert re.fullmatch(r"train cnn: epoch 2/3 loss 0\.6931 val_loss 0\.6900 \(\d+\.\d s\)",
                        lines[0]), lines
    assert re.fullmatch(r"train cnn: epoch 3/3 done \(\d+\.\d s\)", lines[1]), lines


def test_a_tenths_line_waits_for_the_interval_so_quick_work_is_quiet():
    """On a given clock: quick tenths print nothing; a tenth reached after the interval
    prints, with the seconds since the line before."""
    now = [0.0]
    stream = io.StringIO()
    progress = Progress("augment train", 100, "poster", stream=stream, interval=10,
                        clock=lambda: now[0])
    for _ in range(40):  # four tenths within 4 s: nothing
        now[0] += 0.1
        progress.update()
    assert stream.getvalue() == ""
    now[0] += 20
    progress.update(10)  # half done, 24 s after the start
    assert stream.getvalue() == "augment train: 50/100 posters (50%, 24.0 s)\n"
    now[0] += 1
    progress.update(50)  # the end, 1 s later: too soon for another line
    assert stream.getvalue().count("\n") == 1


def test_quick_steps_print_once_a_second_and_the_last_always():
    now = [0.0]
    stream = io.StringIO()
    progress = Progress("train head", 60, "epoch", every_step=True, stream=stream,
                        interval=10, clock=lambda: now[0])
    for _ in range(60):  # 60 epochs of 0.1 s: a line a second, and the last
        now[0] += 0.1
        progress.update(1, {"loss": "0.3"})
    epochs = [int(re.match(r"train head: epoch (\d+)/60", line)[1])
              for line in stream.getvalue().splitlines()]
    assert epochs[-1] == 60 and 5 <= len(epochs) <= 7, epochs


def test_work_whose_result_is_its_output_prints_nothing_piped():
    stream = io.StringIO()
    with Progress("predict", 4, "poster", lines=False, stream=stream) as progress:
        progress.update(4)
    assert stream.getvalue() == ""


def test_a_terminal_gets_a_bar_and_no_lines():
    master, stream = _terminal()
    try:
        assert on_terminal(stream)
        with Progress("augment train", 25, "poster", stream=stream) as progress:
            progress.update(25)
        drawn = _read(master)
    finally:
        stream.close()
        os.close(master)
    assert "augment train" in drawn and "\r" in drawn  # redrawn in place
    assert not re.search(r"\(\d+%, \d+\.\d s\)", drawn)


def test_track_follows_an_iterable(monkeypatch):
    monkeypatch.setenv("POSTERGENRE_PROGRESS_SECONDS", "0")
    stream = io.StringIO()
    saved, sys.stderr = sys.stderr, stream
    try:
        assert list(track(range(10), "ingest demo", "poster")) == list(range(10))
    finally:
        sys.stderr = saved
    assert stream.getvalue().splitlines()[-1].startswith("ingest demo: 10/10 posters (100%")


def test_augment_prints_its_progress_over_posters_when_piped(tiny_data, tiny_split,
                                                             tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("POSTERGENRE_PROGRESS_SECONDS", "0")  # every tenth, however quick
    from postergenre.configs import AugmentConfig
    from postergenre.data.augment import augment_and_shard

    manifest = augment_and_shard(tiny_data, tiny_split, tmp_path / "prepared",
                                 AugmentConfig(image_size=24, shard_size=64))
    err = capsys.readouterr().err
    for split in ("train", "validation", "test"):
        movies = manifest["counts"][split]["movies"]
        lines = re.findall(rf"^augment {split}: (\d+)/{movies} posters \((\d+)%, \d+\.\d s\)$",
                           err, flags=re.MULTILINE)
        assert 1 < len(lines) <= 10 and lines[-1] == (str(movies), "100"), err


@pytest.mark.slow
def test_evaluate_prints_a_line_per_model_scored_when_piped(tiny_prepared, tmp_path, capsys,
                                                            monkeypatch):
    monkeypatch.setenv("POSTERGENRE_PROGRESS_SECONDS", "0")  # every tenth, however quick
    from postergenre.configs import EvaluateConfig
    from postergenre.evaluation.evaluate import evaluate_models
    from tests.helpers import train_tiny

    model = train_tiny(tiny_prepared, tmp_path / "model")
    capsys.readouterr()
    evaluate_models(tiny_prepared, {"cnn": model}, tmp_path / "reports",
                    EvaluateConfig(bootstrap_resamples=20, report_posters=0))
    err = capsys.readouterr().err
    assert re.search(r"^evaluate: model 1/1 cnn scored \(\d+\.\d s\)$", err, re.MULTILINE), err
    assert re.search(r"^evaluate: bootstrap: 20/20 rounds \(100%, \d+\.\d s\)$", err,
                     re.MULTILINE), err
