"""Training under faults: the model folder is swapped in whole, every finished epoch is
checkpointed, and a rerun after a kill resumes after the last finished epoch.

The slow tests kill the real CLI (`python -m postergenre.cli train-...`) with SIGKILL once
its checkpoint records a finished epoch, then rerun it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from postergenre.atomic import FolderBusyError, atomic_folder, partial_folder
from postergenre.training.checkpoint import (
    STATE_FILE,
    Checkpoint,
    checkpoint_for_output,
    default_checkpoint_dir,
)
from tests.helpers import TINY_FLAGS

TINY_SCRATCH = {"conv1_filters": 4, "conv2_filters": 8, "dense_units": 16, "batch_size": 16,
                "stop_patience": 20}
EPOCHS = 6
KILL_TIMEOUT = 300  # seconds for the first epoch to finish on a loaded 2-core machine


def _tree(folder: Path) -> dict[str, str]:
    """{relative path: md5} of every file under `folder`."""
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the folder swap -----------------------------------------------------------------

def test_a_folder_is_swapped_in_whole(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("previous")
    with atomic_folder(target) as work:
        assert work == partial_folder(target) and not list(work.iterdir())
        (work / "model.keras").write_text("new")
        assert (target / "old.txt").read_text() == "previous"  # untouched meanwhile
    assert _tree(target) == {"model.keras": hashlib.md5(b"new").hexdigest()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert oct(target.stat().st_mode & 0o777) != "0o700"  # not mkdtemp's private mode


def test_a_failure_leaves_the_previous_folder_as_it_was(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "model.keras").write_bytes(b"previous model")
    before = _tree(target)
    with pytest.raises(RuntimeError, match="killed"), atomic_folder(target) as work:
        (work / "model.keras").write_bytes(b"")
        raise RuntimeError("killed")
    assert _tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_killed_runs_partial_folder_is_cleared_and_a_live_ones_is_refused(tmp_path):
    target = tmp_path / "model"
    stale = partial_folder(target)
    stale.mkdir()
    (stale / "model.keras").write_bytes(b"")  # what a killed run left
    with atomic_folder(target) as work:
        assert not list(work.iterdir())
        (work / "a").write_text("a")
    assert _tree(target) == {"a": hashlib.md5(b"a").hexdigest()}
    # A live run holds the lock on its partial folder (flock: the kernel drops it with the
    # process, so a killed run's folder is free).
    partial_folder(target).mkdir()
    held = os.open(partial_folder(target), os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(FolderBusyError, match="another process is writing it"), \
                atomic_folder(target):
            pass
    finally:
        os.close(held)
    assert _tree(target) == {"a": hashlib.md5(b"a").hexdigest()}


def test_a_swap_cut_between_its_two_renames_is_undone(tmp_path):
    """Where the filesystem cannot exchange two folders the swap is two renames; a kill
    between them leaves the previous folder as `<target>.old`, put back next time."""
    target = tmp_path / "model"
    old = tmp_path / "model.old"
    old.mkdir()
    (old / "model.keras").write_bytes(b"previous model")
    before = _tree(old)
    with pytest.raises(RuntimeError), atomic_folder(target):
        raise RuntimeError("training failed")
    assert _tree(target) == before and not old.exists()
    # The swap had finished: the leftover `.old` is deleted.
    old.mkdir()
    (old / "x").write_text("stale")
    with atomic_folder(target) as work:
        (work / "new").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# --- the checkpoint folder -----------------------------------------------------------

def _commit(checkpoint: Checkpoint, epochs: int = 2) -> None:
    name = f"fit-last-e{epochs:04d}.weights.h5"
    checkpoint.new_file(name).write_bytes(b"weights")
    checkpoint.commit({"stage": "fit", "epochs_done": epochs, "finished": False,
                       "history": [{"epoch": i + 1, "stage": "fit"} for i in range(epochs)],
                       "files": [name]})


def test_a_checkpoint_of_other_settings_or_data_is_ignored_and_says_why(tmp_path, caplog):
    parts = {"params": {"learning_rate": 0.02, "epochs": 6}, "data": "abc"}
    _commit(Checkpoint(tmp_path / "ck", parts))
    assert Checkpoint(tmp_path / "ck", parts).load()["epochs_done"] == 2
    other = {"params": {"learning_rate": 0.01, "epochs": 6}, "data": "abd"}
    with caplog.at_level(logging.WARNING, "postergenre.training.checkpoint"):
        assert Checkpoint(tmp_path / "ck", other).load() is None
    assert "other settings or data (data, params.learning_rate differ)" in caplog.text
    assert not (tmp_path / "ck").exists()


def test_an_unreadable_or_incomplete_checkpoint_is_ignored(tmp_path, caplog):
    parts = {"params": {}}
    checkpoint = Checkpoint(tmp_path / "ck", parts)
    _commit(checkpoint)
    (tmp_path / "ck" / "fit-last-e0002.weights.h5").unlink()
    with caplog.at_level(logging.WARNING, "postergenre.training.checkpoint"):
        assert Checkpoint(tmp_path / "ck", parts).load() is None
    assert "missing fit-last-e0002.weights.h5" in caplog.text
    _commit(checkpoint)
    (tmp_path / "ck" / STATE_FILE).write_text('{"version": 1, "fing')  # cut short
    assert Checkpoint(tmp_path / "ck", parts).load() is None
    assert "is unreadable" in caplog.text


def test_each_commit_keeps_only_the_files_its_state_names(tmp_path):
    checkpoint = Checkpoint(tmp_path / "ck", {})
    _commit(checkpoint, 1)
    _commit(checkpoint, 2)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == \
        ["fit-last-e0002.weights.h5", STATE_FILE]


def test_where_a_kubeflow_task_keeps_its_checkpoint():
    assert checkpoint_for_output("s3://bucket/root/run/train/model") == \
        "s3://bucket/root/run/train/model.checkpoint"
    # A folder inside the pod does not outlive it: the default (beside it) applies.
    assert checkpoint_for_output("/tmp/local_outputs/train/model") is None
    assert checkpoint_for_output("minio://mlpipeline/v2/artifacts/model") is None
    assert default_checkpoint_dir("out/models/cnn/") == Path("out/models/cnn.checkpoint")


# --- a real training run, killed ----------------------------------------------------

def _start(command: list[str], cwd: Path, log_file: Path) -> subprocess.Popen:
    with open(log_file, "wb") as sink:
        return subprocess.Popen([sys.executable, "-m", "postergenre.cli", *command],
                                cwd=cwd, stdout=sink, stderr=subprocess.STDOUT,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def _kill_when(process: subprocess.Popen, ready, log_file: Path) -> None:
    """SIGKILL `process` as soon as `ready()` is true; fail if it ends first."""
    deadline = time.monotonic() + KILL_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if ready():
                process.send_signal(signal.SIGKILL)
                process.wait()
                return
            if process.poll() is not None:
                pytest.fail(f"training ended ({process.returncode}) before it could be "
                            f"killed:\n{log_file.read_text()[-3000:]}")
            time.sleep(0.05)
        pytest.fail(f"no finished epoch within {KILL_TIMEOUT} s")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _live_rows(folder: Path) -> list[float]:
    """The validation losses a DVCLive folder holds, one per epoch logged."""
    path = folder / "plots" / "metrics" / "eval" / "loss.tsv"
    if not path.is_file():
        return []
    rows = path.read_text().splitlines()
    assert rows[0] == "step\tloss"
    assert [int(r.split("\t")[0]) for r in rows[1:]] == list(range(len(rows) - 1))
    return [float(r.split("\t")[1]) for r in rows[1:]]


def _local_state(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _epochs_done(folder: Path, stage: str = "fit", at_least: int = 1):
    def ready() -> bool:
        state = _local_state(folder)
        return state is not None and state["stage"] == stage and \
            state["epochs_done"] >= at_least
    return ready


@pytest.fixture(scope="module")
def killed_scratch(tiny_prepared, tmp_path_factory):
    """A previous model in `out`, and a `train-scratch` of EPOCHS epochs into it killed
    (SIGKILL) after its first finished epoch: (work folder, hashes of the previous
    model, a pristine copy of the checkpoint it left)."""
    from postergenre.configs import ScratchConfig
    from postergenre.training.scratch import train_scratch

    work = tmp_path_factory.mktemp("killed")
    out = work / "out"
    train_scratch(tiny_prepared, out, ScratchConfig(epochs=1, **TINY_SCRATCH), name="tiny")
    previous = _tree(out)
    log_file = work / "killed.log"
    process = _start(["train-scratch", "--name", "tiny", "--prepared", str(tiny_prepared),
                      "--out", "out", "--epochs", str(EPOCHS), *TINY_FLAGS], work, log_file)
    _kill_when(process, _epochs_done(work / "out.checkpoint"), log_file)
    shutil.copytree(work / "out.checkpoint", work / "pristine.checkpoint")
    return work, previous, work / "pristine.checkpoint"


@pytest.mark.slow
def test_a_killed_training_keeps_the_previous_model_and_resumes(killed_scratch, tiny_prepared,
                                                               monkeypatch, capsys):
    from postergenre.cli import main

    work, previous, _ = killed_scratch
    out = work / "out"
    # The kill left the previous model exactly as it was: no 0-byte model.keras, no mix.
    assert _tree(out) == previous
    assert all(p.stat().st_size > 0 for p in out.rglob("*") if p.is_file())
    state = _local_state(work / "out.checkpoint")
    done = state["epochs_done"]
    assert 1 <= done < EPOCHS and not state["finished"]

    # Rerun the same command: it resumes after the checkpoint's epoch.
    private_tmp = work / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    monkeypatch.chdir(work)
    # -v: the log line of the resume; stderr is not a terminal: a line per epoch trained
    # (however quick: progress.py prints a quick epoch's line once a second otherwise).
    monkeypatch.setenv("POSTERGENRE_PROGRESS_SECONDS", "0")
    assert main(["train-scratch", "-v", "--name", "tiny", "--prepared", str(tiny_prepared),
                 "--out", "out", "--epochs", str(EPOCHS), "--live", "live", *TINY_FLAGS]) == 0
    printed = capsys.readouterr()
    assert f"resumed after epoch {done}," in printed.out
    assert f"after epoch {done} (fit, {done} epochs done)" in printed.err
    trained = [int(n) for n in re.findall(rf"^train tiny: epoch (\d+)/{EPOCHS} ",
                                          printed.err, flags=re.MULTILINE)]
    assert trained == list(range(done + 1, EPOCHS + 1))  # no finished epoch trained again

    info = json.loads((out / "training.json").read_text())
    history = json.loads((out / "history.json").read_text())
    assert info["resumed_from_epoch"] == done and info["epochs_run"] == EPOCHS
    assert [e["epoch"] for e in history] == list(range(1, EPOCHS + 1))
    # The finished epochs come from the checkpoint, as they were.
    assert history[:done] == [{k: v for k, v in e.items() if k != "stage"}
                              for e in state["history"]]
    assert json.loads((out / "metadata.json").read_text())["model"] == "tiny"
    assert (out / "model.keras").stat().st_size > 0
    # DVCLive's folder holds every epoch, the checkpoint's too, as the history has them.
    assert _live_rows(work / "live") == [e["val_loss"] for e in history]
    assert json.loads((work / "live" / "metrics.json").read_text())["step"] == EPOCHS - 1
    # Nothing left behind: no partial folder, no checkpoint, nothing in the temp folder.
    assert sorted(p.name for p in work.iterdir()) == \
        ["killed.log", "live", "out", "pristine.checkpoint", "tmp"]
    assert not list(private_tmp.iterdir())


@pytest.mark.slow
def test_a_checkpoint_of_other_settings_is_not_resumed(killed_scratch, tiny_prepared,
                                                       tmp_path, caplog):
    from postergenre.configs import ScratchConfig
    from postergenre.training.scratch import train_scratch

    _, _, pristine = killed_scratch
    checkpoint = tmp_path / "other.checkpoint"
    shutil.copytree(pristine, checkpoint)
    config = ScratchConfig(epochs=2, learning_rate=0.01, **TINY_SCRATCH)
    with caplog.at_level(logging.INFO):
        info = train_scratch(tiny_prepared, tmp_path / "out", config, name="tiny",
                             checkpoint_dir=checkpoint)
    assert "made with other settings or data (params.epochs, params.learning_rate " \
        "differ): ignored, training starts at epoch 1" in caplog.text
    assert "resuming" not in caplog.text
    assert info["resumed_from_epoch"] is None
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert [e["epoch"] for e in history] == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # checkpoint removed


@pytest.mark.slow
def test_a_retried_task_resumes_from_its_s3_checkpoint(tiny_prepared, tmp_path, s3):
    """Kubeflow: a retry is a fresh pod with the same output URI. The checkpoint mirrored
    to S3 (moto on loopback) is what it resumes from; its local copy is gone."""
    from postergenre.configs import model_spec
    from postergenre.training.train import train_model

    remote = checkpoint_for_output("s3://models/root/run-1/train/model")
    log_file = tmp_path / "killed.log"

    def remote_epochs() -> bool:
        try:
            body = s3.get_object(Bucket="models",
                                 Key=f"root/run-1/train/model.checkpoint/{STATE_FILE}")
        except s3.exceptions.NoSuchKey:
            return False
        return json.loads(body["Body"].read())["epochs_done"] >= 1

    process = _start(["train-scratch", "--name", "tiny", "--prepared", str(tiny_prepared),
                      "--out", "model", "--epochs", "3", "--checkpoint-dir", remote,
                      *TINY_FLAGS], tmp_path, log_file)
    _kill_when(process, remote_epochs, log_file)
    done = json.loads(s3.get_object(Bucket="models", Key=(
        f"root/run-1/train/model.checkpoint/{STATE_FILE}"))["Body"].read())["epochs_done"]
    shutil.rmtree(tmp_path / "model.checkpoint")  # the pod is gone, and its disk
    shutil.rmtree(tmp_path / "model.partial", ignore_errors=True)

    spec = model_spec("tiny", {"kind": "scratch", "epochs": 3, **TINY_SCRATCH})
    info = train_model(tiny_prepared, tmp_path / "model", spec, checkpoint_dir=remote)
    assert info["resumed_from_epoch"] == done and info["epochs_run"] == 3
    left = s3.list_objects_v2(Bucket="models", Prefix="root/run-1/train/model.checkpoint")
    assert left.get("KeyCount", 0) == 0  # deleted once the model was written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed.log", "model"]


@pytest.mark.slow
def test_a_fine_tuning_transfer_resumes_in_its_second_phase(tiny_prepared, tmp_path):
    """Killed while fine-tuning: the rerun trains neither the head again nor the
    fine-tuning epochs already finished."""
    from postergenre.configs import model_spec
    from postergenre.training.train import train_model

    settings = {"weights": "none", "epochs": 1, "fine_tune_epochs": 3, "batch_size": 32,
                "stop_patience": 10}
    log_file = tmp_path / "killed.log"
    process = _start(["train-transfer", "--name", "tuned", "--prepared", str(tiny_prepared),
                      "--out", "model", *[f"--set={k}={v}" for k, v in settings.items()]],
                     tmp_path, log_file)
    _kill_when(process, _epochs_done(tmp_path / "model.checkpoint", "fine_tune"), log_file)
    state = _local_state(tmp_path / "model.checkpoint")
    head = [e for e in state["history"] if e["stage"] == "head"]
    done = state["epochs_done"]

    spec = model_spec("tuned", {"kind": "transfer", **settings})
    info = train_model(tiny_prepared, tmp_path / "model", spec, live_dir=tmp_path / "live")
    history = json.loads((tmp_path / "model" / "history.json").read_text())
    assert _live_rows(tmp_path / "live") == [e["val_loss"] for e in history]  # both phases
    assert info["resumed_from_epoch"] == len(head) + done
    assert [e["epoch"] for e in history] == list(range(1, len(history) + 1))
    assert history[:len(head)] == [{k: v for k, v in e.items() if k != "stage"}
                                   for e in head]
    assert [e["phase"] for e in history] == ["head"] * len(head) + \
        ["fine_tune"] * (len(history) - len(head))
    assert len(history) - len(head) > done  # it went on fine-tuning after the kill
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed.log", "live", "model"]


# --- Ctrl-C --------------------------------------------------------------------------

CTRL_C_EPOCHS = 20
EPOCH_LINE = re.compile(rf"train tiny: epoch (\d+)/{CTRL_C_EPOCHS} loss \d+\.\d{{4}} "
                        r"val_loss \d+\.\d{4} val_auc \d+\.\d{4} \(\d+\.\d s\)")


def _sigint_as_a_terminal_leaves_it() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def interrupted_scratch(tiny_prepared, tmp_path_factory):
    """`train-scratch` of CTRL_C_EPOCHS epochs, stderr piped, given a Ctrl-C (SIGINT to its
    process group, as a terminal sends it) once it has printed its first epoch's line:
    (work folder, the command, its exit code, its stderr lines, the live folder's
    validation losses when that line came)."""
    work = tmp_path_factory.mktemp("interrupted")
    command = [sys.executable, "-m", "postergenre.cli", "train-scratch", "--name", "tiny",
               "--prepared", str(tiny_prepared), "--out", "out", "--live", "live",
               "--epochs", str(CTRL_C_EPOCHS), *TINY_FLAGS]
    process = subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               # As from a terminal even when the tests run in the
                               # background (`make test &`), which ignores SIGINT.
                               preexec_fn=_sigint_as_a_terminal_leaves_it,
                               # As a user runs it: TensorFlow's C++ lines at the CLI's level.
                               env={**{k: v for k, v in os.environ.items()
                                       if k != "TF_CPP_MIN_LOG_LEVEL"},
                                    # A line for every epoch, however quick (progress.py).
                                    "POSTERGENRE_PROGRESS_SECONDS": "0"})
    lines: list[str] = []
    live_then: list[float] = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            if EPOCH_LINE.fullmatch(lines[-1]):
                live_then = _live_rows(work / "live")
                os.killpg(process.pid, signal.SIGINT)
                break
        lines += process.stderr.read().splitlines()
        process.wait(timeout=KILL_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return work, command, process.returncode, lines, live_then


@pytest.mark.slow
def test_piped_training_prints_one_plain_line_per_epoch(interrupted_scratch):
    *_, lines, _ = interrupted_scratch
    epochs = [int(found[1]) for line in lines if (found := EPOCH_LINE.fullmatch(line))]
    assert epochs == list(range(1, len(epochs) + 1)) and epochs
    assert not any("\r" in line or "it/s" in line for line in lines)  # no bar in a pipe


@pytest.mark.slow
def test_ctrl_c_exits_130_with_one_line_and_leaves_no_half_written_output(
        interrupted_scratch):
    work, _, code, lines, _ = interrupted_scratch
    assert code == 130
    state = _local_state(work / "out.checkpoint")
    done = len(state["history"])
    others = [line for line in lines if not EPOCH_LINE.fullmatch(line)]
    assert others == [f"postergenre train-scratch: interrupted after epoch {done}; the same "
                      "command resumes from its checkpoint (out.checkpoint)"]
    assert 1 <= done < CTRL_C_EPOCHS
    # No model folder (none was there before), no partial folder: only the checkpoint and
    # DVCLive's folder, each epoch's files whole.
    assert sorted(p.name for p in work.iterdir()) == ["live", "out.checkpoint"]
    assert len(_live_rows(work / "live")) in (done - 1, done)
    json.loads((work / "live" / "metrics.json").read_text())


@pytest.mark.slow
def test_dvclive_files_are_written_while_the_model_trains(interrupted_scratch):
    """When the first epoch's line came (of 20 epochs, and the run was then interrupted,
    so it never finished), DVCLive's folder already held that epoch."""
    work, _, code, lines, live_then = interrupted_scratch
    assert code == 130
    first = next(line for line in lines if EPOCH_LINE.fullmatch(line))
    assert len(live_then) >= 1
    assert f"val_loss {live_then[0]:.4f}" in first


@pytest.mark.slow
def test_the_same_command_resumes_after_ctrl_c(interrupted_scratch):
    work, command, _, _, _ = interrupted_scratch
    done = len(_local_state(work / "out.checkpoint")["history"])
    rerun = subprocess.run(command, cwd=work, capture_output=True, text=True,
                           timeout=KILL_TIMEOUT)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed after epoch {done}," in rerun.stdout
    history = json.loads((work / "out" / "history.json").read_text())
    assert _live_rows(work / "live") == [e["val_loss"] for e in history]
    assert sorted(p.name for p in work.iterdir()) == ["live", "out"]
