"""The CLI dvc.yaml calls: help that explains, and one clear line for bad input."""

import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from postergenre import __version__
from postergenre.cli import main, train_command
from postergenre.configs import MODEL_KINDS, AugmentConfig, TransferConfig
from postergenre.typed_config import config_from_args, describe_fields, field_choices

# One training command per model kind, generated from configs.MODEL_KINDS.
TRAINING = tuple(train_command(k) for k in MODEL_KINDS)
COMMANDS = ("predict", "batch-predict", "ingest", "validate", "split", "augment", *TRAINING,
            "evaluate", "gate", "register", "params", "models", "summary", "registry",
            "pipeline")


def _help(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "postergenre.cli", *args, "--help"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _groups(text: str) -> dict[str, dict[str, str]]:
    """The help's command groups: {title: {command: its summary, wrapped lines joined}}."""
    groups: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    command = ""
    for line in text.splitlines():
        if re.fullmatch(r"[A-Za-z].*:", line):
            current = groups.setdefault(line[:-1], {})
        elif current is not None and (found := re.fullmatch(r"  (\S+) +(.*)", line)):
            command = found[1]
            current[command] = found[2]
        elif current is not None and command and re.fullmatch(r" {6,}\S.*", line):
            current[command] += " " + line.strip()
        else:
            command = ""
    return groups


def test_help_groups_the_commands_with_examples():
    text = _help()
    groups = _groups(text)
    listed = [c for title, commands in groups.items() if title not in ("examples", "options")
              for c in commands]
    assert sorted(listed) == sorted(COMMANDS)  # each command once, none left out
    assert list(groups)[:5] == ["options", "use a model", "run one pipeline stage (what "
                                "dvc.yaml and the Kubeflow components run)", "inspect a run",
                                "Kubeflow"]
    assert list(groups["use a model"]) == ["predict", "batch-predict", "registry"]
    assert list(groups["inspect a run"]) == ["params", "models", "summary"]
    assert list(groups["Kubeflow"]) == ["pipeline"]
    examples = re.findall(r"^  postergenre \S+.*$", text.split("\nexamples:\n")[1],
                          flags=re.MULTILINE)
    assert len(examples) >= 2
    # A training command's summary is its kind's summary line, whole.
    stages = groups["run one pipeline stage (what dvc.yaml and the Kubeflow components run)"]
    for kind, config in MODEL_KINDS.items():
        line = (config.__doc__ or "").strip().splitlines()[0].rstrip(".")
        assert stages[train_command(kind)].endswith(line[:1].lower() + line[1:])
    assert all(not summary.endswith((",", "(", " and", " or", " the", " a", " then"))
               for commands in groups.values() for summary in commands.values())


def test_the_linear_probe_command_is_train_linear_probe_with_the_old_spelling_kept():
    from postergenre.cli import build_parser

    assert train_command("linear_probe") == "train-linear-probe"
    assert "train-linear_probe" not in _help()  # listed once, by its one name
    # dvc.yaml's `train-${item.kind}` (and existing scripts) still work: the same command.
    for spelling in ("train-linear-probe", "train-linear_probe"):
        args = build_parser().parse_args([spelling, "--name", "probe", "--prepared", "p",
                                          "--out", "o"])
        assert args.command == "train-linear-probe"


def test_settings_with_choices_show_them():
    text = " ".join(_help("train-transfer").split())
    assert "--optimizer {sgd,adam,adamw}" in text
    assert ("--backbone {vgg16,efficientnet_lite0,efficientnet_lite1,efficientnet_lite2}"
            in text)
    assert " ".join(_help("augment").split()).count("--transforms {hflip,crop,jitter},...") == 2
    for name, *_ in describe_fields(TransferConfig):
        if name in field_choices(TransferConfig):
            assert f"{'--' + name.replace('_', '-')} TEXT" not in text


def test_a_missing_registry_is_said_plainly(tmp_path, capsys, monkeypatch):
    poster = tmp_path / "poster.jpg"
    poster.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(poster)]) == 2  # the default: ./registry
    assert capsys.readouterr().err == (
        f"postergenre predict: error: no registry at {tmp_path / 'registry'}: nothing has "
        "been registered yet (`make run` registers the model the gate blesses); or give a "
        "model folder with --model\n")
    (tmp_path / "registry").mkdir()
    assert main(["predict", str(poster)]) == 2
    assert capsys.readouterr().err == (
        f"postergenre predict: error: the registry at {tmp_path / 'registry'} holds no "
        "blessed model yet (the gate has blessed none); give a model folder with --model\n")


@pytest.mark.parametrize("command, said", [
    (["train-scratch", "--name", "cnn", "--prepared", "nope", "--out", "m"],
     "nope/manifest.json not found: is nope the output of augment?"),
    (["train-scratch", "--name", "rnn", "--prepared", "nope", "--out", "m", "--params",
      "params.yaml"], "params.yaml: no model 'rnn'"),
    (["augment", "--data", ".", "--split", "nope", "--out", "p"],
     "nope/train.csv not found: is nope the output of split?"),
    (["evaluate", "--prepared", "prepared", "--model", "cnn=nope", "--out", "r"],
     "--model nope: no such file or folder"),
    (["evaluate", "--prepared", "prepared", "--models-root", "models", "--out", "r"],
     "--models-root models/cnn: no such file or folder"),
    (["predict", "poster.jpg", "--model", "nope"], "--model nope: no such file or folder"),
    (["predict", "missing.jpg", "--registry", "registry"], "no such poster: missing.jpg"),
    (["batch-predict", "--model", "nope", "--out", "o"], "--model nope: no such file or "
     "folder"),
])
def test_a_bad_argument_is_reported_before_tensorflow_loads(tmp_path, command, said):
    """TensorFlow takes 15-40 s to start: the command line is checked first (the
    evidence: TensorFlow is not imported when the error comes)."""
    (tmp_path / "params.yaml").write_text("models:\n  cnn:\n    kind: scratch\n")
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / "manifest.json").write_text("{}")
    (tmp_path / "poster.jpg").write_bytes(b"")
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "latest.json").write_text('{"entry": "cnn-0123456789abcdef"}')
    probe = ("import sys; from postergenre.cli import main; code = main(sys.argv[1:]); "
             "print(code, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr
    assert f"postergenre {command[0]}: error: {said}" in done.stderr


# What a command imports is most of its fixed cost (issue 27): seconds of CPU each for
# TensorFlow (which brings Keras, matplotlib, scikit-learn and pandas), great-expectations,
# scikit-learn, matplotlib, tfx-bsl with Apache Beam.
HEAVY = ("tensorflow", "keras", "great_expectations", "sklearn", "matplotlib", "tfx_bsl",
         "apache_beam", "pandas")


def loaded_after(command: list[str], cwd) -> list[str]:
    """The heavy modules in sys.modules after `postergenre COMMAND` ran to exit 0, in a
    fresh interpreter."""
    probe = ("import sys; from postergenre.cli import main; code = main(sys.argv[1:]); "
             f"print(code, *[m for m in {HEAVY!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True,
                          text=True, cwd=cwd)
    assert done.returncode == 0, done.stderr
    code, *loaded = done.stdout.splitlines()[-1].split()
    assert code == "0", done.stdout + done.stderr
    return loaded


def test_gate_and_summary_import_no_heavy_library(tmp_path):
    """The gate decides from metrics.json and summary prints it: neither needs
    scikit-learn, matplotlib or TensorFlow (together about 7 s of CPU)."""
    scorer = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.1, "genres_per_movie": 2.0,
              "true_genres_per_movie": 2.0}
    baseline = {**scorer, "f1_micro": 0.0, "map_macro": 0.1, "genres_per_movie": 0.0}
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    (evaluation / "metrics.json").write_text(json.dumps(
        {"cnn": scorer, "null": baseline, "most_frequent": baseline, "top3": baseline}))
    assert loaded_after(["gate", "--evaluation", "evaluation", "--out", "gated",
                         "--set", "genres_per_movie_band=100"], tmp_path) == []
    assert json.loads((tmp_path / "gated" / "blessing.json").read_text())["model"] == "cnn"
    assert loaded_after(["summary", "--metrics", "evaluation/metrics.json", "--blessing",
                         "gated/blessing.json"], tmp_path) == []


def test_validate_imports_great_expectations_and_pandas_only(tmp_path):
    from tests.helpers import label_row, make_dataset

    make_dataset(tmp_path, [label_row(n) for n in range(1, 6)])
    (tmp_path / "params.yaml").write_text("validate:\n  min_genre_support: 0\n")
    assert loaded_after(["validate", "--data", "data", "--out", "validated"], tmp_path) == [
        "great_expectations", "pandas"]
    assert (tmp_path / "validated" / "labels.csv").is_file()


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
    params.write_text("models:\n  probe:\n    kind: linear_probe\n")
    assert main(["train-scratch", "--name", "probe", *base]) == 2
    assert "use `postergenre train-linear-probe`" in capsys.readouterr().err
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


def test_plain_summaries_end_without_an_empty_reject_list_and_say_random_weights(
        tiny_data, tmp_path, capsys):
    """No `{}` after `0 rejected`, no `(none weights)`: words a reader takes for errors."""
    from postergenre.configs import model_spec

    code = main(["validate", "--data", str(tiny_data), "--out", str(tmp_path / "v"),
                 "--min-genre-support", "0"])
    assert code == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("validate:")][-1]
    assert line.endswith(" 0 rejected"), line
    for kind in ("transfer", "linear_probe"):
        described = model_spec("m", {"kind": kind, "weights": "none"}).config.describe()
        assert "(random weights)" in described and "none weights" not in described
