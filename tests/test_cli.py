"""The CLI dvc.yaml calls: help that explains, and one clear line for bad input."""

import re
import subprocess
import sys

import pandas as pd
import pytest

from postergenre import __version__
from postergenre.cli import main
from postergenre.configs import MODEL_KINDS, AugmentConfig
from postergenre.typed_config import config_from_args, describe_fields

# One training command per model kind, generated from configs.MODEL_KINDS.
STAGES = ("ingest", "validate", "split", "augment", *(f"train-{k}" for k in MODEL_KINDS),
          "evaluate", "gate", "register", "models", "params", "summary", "predict",
          "batch-predict", "pipeline", "registry")


def _help(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "postergenre.cli", *args, "--help"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_help_lists_every_stage_as_a_command():
    # The command list: one indented name at the start of a line, not a word anywhere.
    listed = re.findall(r"^ {4}([a-z][a-z0-9_-]*)(?: |$)", _help(), flags=re.MULTILINE)
    assert listed == list(STAGES)


def test_stage_help_shows_every_setting_with_its_default():
    text = " ".join(_help("augment").split())
    for name, kind, default, _ in describe_fields(AugmentConfig):
        flag = "--" + name.replace("_", "-")
        shown = ",".join(default) if kind == "strings" else str(default)
        assert re.search(rf"{flag} \S+ .*?\(default: {re.escape(shown)}\)", text), flag


def test_version():
    done = subprocess.run([sys.executable, "-m", "postergenre.cli", "--version"],
                          capture_output=True, text=True)
    assert done.stdout.strip() == f"postergenre {__version__}"


def _augment_config(args, tmp_path):
    from postergenre.cli import build_parser

    parsed = build_parser().parse_args(["augment", "--data", "d", "--split", "s",
                                        "--out", "o", *args])
    return config_from_args(AugmentConfig, "augment", parsed)


def test_settings_come_from_params_then_set_then_flags(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("augment:\n  image_size: 48\n  seed: 5\n  shard_size: 7\n")
    config = _augment_config(["--params", str(params), "--set", "seed=6",
                              "--shard-size", "9"], tmp_path)
    assert (config.image_size, config.seed, config.shard_size) == (48, 6, 9)
    assert config.jitter == AugmentConfig().jitter  # not in the file: the default


def test_unknown_or_bad_setting_is_named(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("split:\n  train_fraction: 0.6\n  sed: 1\n")
    assert main(["split", "--labels", "l.csv", "--out", str(tmp_path / "o"),
                 "--params", str(params)]) == 2
    assert "split.sed: unknown setting" in capsys.readouterr().err
    params.write_text("split:\n  train_fraction: 0.6\n")
    assert main(["split", "--labels", "l.csv", "--out", str(tmp_path / "o"),
                 "--params", str(params), "--train-fraction", "lots"]) == 2
    assert "split.train_fraction: 'lots' is not a finite number" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_training_command_must_match_the_models_kind(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("models:\n  cnn:\n    kind: scratch\n")
    base = ["--prepared", "p", "--out", str(tmp_path / "m"), "--params", str(params)]
    assert main(["train-transfer", "--name", "cnn", *base]) == 2
    assert "use `postergenre train-scratch`" in capsys.readouterr().err
    assert main(["train-scratch", "--name", "rnn", *base]) == 2
    assert "no model 'rnn'" in capsys.readouterr().err


def test_bad_labels_table_fails_with_the_row_named(tiny_data, tmp_path, capsys):
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "posters").symlink_to(tiny_data / "posters")
    labels = pd.read_csv(tiny_data / "labels.csv", dtype=str, keep_default_na=False)
    labels.loc[4, "genres"] = "Drama|Space Opera"
    labels.to_csv(bad / "labels.csv", index=False)
    assert main(["validate", "--data", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "line 6" in err and labels.loc[4, "imdb_id"] in err and "Space Opera" in err
    assert "Traceback" not in err


def test_missing_input_is_named(tmp_path, capsys):
    assert main(["gate", "--evaluation", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "out")]) == 2
    assert f"{tmp_path / 'nope' / 'metrics.json'} (run evaluate first)" in \
        capsys.readouterr().err


def test_malformed_model_flag_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["register", "--blessing", "b.json", "--model", "scratch", "--registry", "r"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:  # --model and --models-root: one or other
        main(["register", "--blessing", "b.json", "--model", "a=b", "--models-root", "m",
              "--registry", "r"])
    assert exit_info.value.code == 2


def test_unknown_pipeline_parameter_is_named(capsys):
    assert main(["pipeline", "run", "--local", "-p", "epochs=3"]) == 2
    assert "unknown pipeline parameter 'epochs'" in capsys.readouterr().err


def test_a_tensorflow_stage_is_quiet_by_default(tmp_path):
    """No native start-up chatter: a bad input gives exactly one line on stderr."""
    done = subprocess.run([sys.executable, "-m", "postergenre.cli", "train-scratch", "--name",
                           "cnn", "--prepared", str(tmp_path / "nope"), "--out",
                           str(tmp_path / "m")], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"postergenre train-scratch: error: {tmp_path / 'nope' / 'manifest.json'} not found: "
        f"is {tmp_path / 'nope'} the output of augment?"]


def test_a_full_disk_is_one_line_naming_the_file(tmp_path):
    """A write that fails for want of space (here: the file-size limit, EFBIG, which the
    kernel raises as ENOSPC would be) ends with one line naming the file, no traceback, and
    leaves no temp file behind."""
    import resource
    import signal

    labels = tmp_path / "labels.csv"
    rows = [f"tt{i:07d},Drama|Comedy,poster{i}.jpg," for i in range(400)]
    labels.write_text("imdb_id,genres,poster,duplicate_group\n" + "\n".join(rows) + "\n")

    def small_files() -> None:  # in the child: writes past 4 KB fail, without SIGXFSZ
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    out = tmp_path / "split"
    done = subprocess.run([sys.executable, "-m", "postergenre.cli", "split", "--labels",
                           str(labels), "--out", str(out)],
                          capture_output=True, text=True, preexec_fn=small_files, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert re.fullmatch(rf"postergenre split: error: {re.escape(str(out))}/\w+\.csv: "
                        r"File too large", line), line
    assert not list(out.glob(".*.tmp"))


def test_log_lines_share_the_stages_style_unless_verbose(capsys):
    import logging

    from postergenre.cli import configure_logging

    try:
        configure_logging(0)
        logging.getLogger("postergenre.data.split").warning("near-duplicates %s", "apart")
        logging.getLogger("postergenre.data.split").info("hidden")
        assert capsys.readouterr().err == "warning: near-duplicates apart\n"
        configure_logging(1)
        logging.getLogger("postergenre.data.split").info("shown")
        assert re.search(r"^\S+ \S+ INFO postergenre\.data\.split: shown$",
                         capsys.readouterr().err.strip())
    finally:
        for number in (logging.WARNING, logging.ERROR, logging.CRITICAL):
            logging.addLevelName(number, logging.getLevelName(number).upper())
