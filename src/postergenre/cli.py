"""`postergenre`: one subcommand per pipeline stage, plus summary and pipeline tools.

`dvc.yaml` calls these subcommands with paths only; each stage reads its settings from
its section of `params.yaml` (`--params FILE`, `--set KEY=VALUE`, or one flag per
setting, generated with its help and default from the stage's config in configs.py) and
calls one library function, nothing more.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from postergenre import __version__
from postergenre.atomic import FolderBusyError
from postergenre.configs import (
    MODEL_KINDS,
    MODELS_SECTION,
    SOURCES,
    AugmentConfig,
    EvaluateConfig,
    GateConfig,
    IngestConfig,
    SplitConfig,
    TrainingConfig,
    ValidateConfig,
    load_run_params,
    model_spec,
)
from postergenre.data.storage import is_remote
from postergenre.typed_config import (
    DEFAULT_PARAMS,
    ConfigError,
    add_config_flags,
    add_params_flags,
    config_from_args,
    describe_fields,
    parse_assignment,
    section_of,
    set_dotted,
)

# TensorFlow's C++ log lines (its start-up, oneDNN's notices, which print as errors
# though nothing failed) hide the stage's own output: off by default, shown with -v
# (main sets it before TensorFlow loads; a value in the environment wins).
TF_LOG_LEVEL_BY_VERBOSITY = {0: "3", 1: "2", 2: "0"}


def _model_pairs(values: Sequence[str]) -> dict[str, str]:
    """`NAME=DIR` flags -> {name: dir}, in the order given."""
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise argparse.ArgumentTypeError(f"--model expects NAME=DIR, got {value!r}")
        if name in pairs:
            raise argparse.ArgumentTypeError(f"--model {name!r} given twice")
        pairs[name] = path
    return pairs


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown for plain flags (config flags carry theirs in their help)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default:" in text or action.default in (None, argparse.SUPPRESS, False, "") \
                or action.required or isinstance(action.default, list):
            return text
        return text + " (default: %(default)s)"


def _verbosity_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more log lines: -v for progress (INFO), -vv for DEBUG")
    return parent


def _stage_parser(sub, name: str, help_text: str, config: type | None = None,
                  section: str | None = None, aliases: Sequence[str] = ()
                  ) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=textwrap.fill(help_text, 88),
                       aliases=list(aliases), formatter_class=_Formatter,
                       parents=[_verbosity_parent()])
    if aliases:  # the name typed, an alias or not, is the command's one name from here on
        p.set_defaults(command=name)
    if config is not None:
        add_params_flags(p)
        add_config_flags(p, config, f"settings (params.yaml section '{section}'; "
                         "flags override it)")
    return p


# The paths a command reads, declared beside their flags (`set_defaults(inputs=...)`) and
# checked before anything heavy loads (check_arguments): (dest, a file the folder must
# hold or "" for any existing path, the stage that writes it or "").
MANIFEST = "manifest.json"


def train_command(kind: str) -> str:
    """The training command of a model kind: `train-` and the kind, dashes for
    underscores (`train-linear-probe`); dvc.yaml's `train-${item.kind}` spelling
    (`train-linear_probe`) is an alias of it."""
    return "train-" + kind.replace("_", "-")


# Training command -> its model kind.
TRAIN_COMMANDS = {train_command(kind): kind for kind in MODEL_KINDS}


def _add_training_parser(sub, kind: str, config: type) -> None:
    # The config's summary line (its docstring's first line) says what the kind is.
    summary = (config.__doc__ or "").strip().splitlines()[0].rstrip(".")
    command = train_command(kind)
    old = f"train-{kind}"
    p = _stage_parser(sub, command, f"train a {kind} model: "
                      f"{summary[:1].lower()}{summary[1:]}", config,
                      f"{MODELS_SECTION}.NAME", aliases=[old] if old != command else [])
    if old != command:
        p.description = textwrap.fill(f"{p.description} (also `postergenre {old}`, as "
                                      "dvc.yaml spells it)", 88)
    p.add_argument("--name", required=True, help="the model's name: its entry under "
                   f"'{MODELS_SECTION}' in params.yaml, and its name in every output")
    p.add_argument("--prepared", required=True, help="augment's output folder (shards)")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--data-version", default="",
                   help="the data version trained on (e.g. data.dvc's md5), for metadata")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="where each finished epoch is checkpointed, a folder or an s3:// "
                   "URL (default: OUT.checkpoint); a rerun with the same settings and "
                   "data resumes from it, and it is deleted once OUT is written")
    p.add_argument("--live", default=None, metavar="DIR",
                   help="a DVCLive folder each finished epoch is logged to as it ends "
                   "(metrics.json, plots/metrics/), for `dvc plots` and DVCLive's views; "
                   "dvc.yaml gives reports/training/NAME")
    p.set_defaults(inputs=(("prepared", MANIFEST, "augment"),))


# `postergenre --help` lists the commands by what they are for (every command is in one
# group: one that is not named here is listed under "other").
COMMAND_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("use a model", ("predict", "batch-predict", "registry")),
    ("run one pipeline stage (what dvc.yaml and the Kubeflow components run)",
     ("ingest", "validate", "split", "augment", *TRAIN_COMMANDS, "evaluate", "gate",
      "register")),
    ("inspect a run", ("params", "models", "summary")),
    ("Kubeflow", ("pipeline",)),
)
EXAMPLES = (
    ("postergenre predict poster.jpg", "its genres, by the registry's blessed model at the "
     "thresholds it was blessed with"),
    ("postergenre params --set models.scratch_cnn.epochs=3", "a run's settings, checked"),
    ("postergenre pipeline compile --output pipeline.yaml", "the Kubeflow pipeline"),
)


def _command_listing(sub: argparse._SubParsersAction) -> str:
    """The commands by group, each with its summary, then the examples."""
    summaries = {action.dest: action.help or "" for action in sub._choices_actions}
    grouped = [name for _, names in COMMAND_GROUPS for name in names]
    groups = [*COMMAND_GROUPS, ("other", tuple(n for n in summaries if n not in grouped))]
    width = max(map(len, summaries)) + 4
    lines: list[str] = []
    for title, names in groups:
        if not names:
            continue
        lines += ["", f"{title}:"]
        for name in names:
            lines += textwrap.wrap(summaries[name], 92, initial_indent=f"  {name:<{width - 2}}",
                                   subsequent_indent=" " * width, break_on_hyphens=False)
    lines += ["", "examples:"]
    for command, what in EXAMPLES:
        lines += [f"  {command}", f"      {what}"]
    lines += ["", "`postergenre COMMAND --help` lists a command's flags and settings."]
    return "\n".join(lines[1:])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postergenre", formatter_class=_Formatter,
        usage="postergenre [-h] [--version] [-v] COMMAND ...",
        description="Predict a movie's genres from its poster: use a blessed model, run the\n"
        "pipeline's stages one by one (what `dvc repro` and the Kubeflow pipeline do), or\n"
        f"inspect a run. A stage's settings come from its section of {DEFAULT_PARAMS} and\n"
        "any overlays given with --params.",
    )
    parser.add_argument("--version", action="version", version=f"postergenre {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log lines: -v for progress (INFO), -vv for DEBUG")
    # The listing is the epilog's, by group (help=SUPPRESS: not argparse's flat one).
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help=argparse.SUPPRESS, prog="postergenre")

    p = _stage_parser(sub, "ingest", "write a poster data set (labels.csv + posters/)",
                      IngestConfig, "ingest")
    p.add_argument("--source", choices=SOURCES, default="demo",
                   help="demo: synthetic posters generated offline from a seed; tmdb: "
                   "MovieLens ids -> TMDb posters (needs TMDB_API_KEY or "
                   "TMDB_READ_ACCESS_TOKEN in the environment); local: a poster folder + "
                   "labels CSV (--local-dir); dvc: a data version pulled from a DVC remote")
    p.add_argument("--out", required=True, help="data set folder to write (e.g. data)")
    p.add_argument("--data-version", default="",
                   help="dvc source: the md5 in data.dvc, or a git revision of --dvc-repo")
    p.add_argument("--report", default=None, help="ingest report JSON to write")

    p = _stage_parser(sub, "validate", "check the labels table and posters "
                      "(great-expectations)", ValidateConfig, "validate")
    p.add_argument("--data", required=True, help="data set folder (labels.csv + posters/)")
    p.add_argument("--out", required=True, help="folder for kept labels, rejects, summary")
    p.add_argument("--metrics", default=None, help="rows in/kept/rejected JSON (DVC metrics; "
                   "default OUT/metrics.json)")
    p.add_argument("--docs", default=None, help="Data Docs HTML (default OUT/data_docs.html)")

    p = _stage_parser(sub, "split", "train/validation/test by movie, before augmentation",
                      SplitConfig, "split")
    p.add_argument("--labels", required=True, help="validated labels.csv (or its folder)")
    p.add_argument("--out", required=True, help="folder for train/validation/test.csv")

    p = _stage_parser(sub, "augment", "resize into shards; upsample rare genres in the "
                      "training split only", AugmentConfig, "augment")
    p.add_argument("--data", required=True, help="data set folder the posters are in")
    p.add_argument("--split", required=True, help="split's output folder")
    p.add_argument("--out", required=True, help="folder for the TFRecord shards")
    p.set_defaults(inputs=(("data", "", ""), ("split", "train.csv", "split")))

    for kind, config in MODEL_KINDS.items():
        _add_training_parser(sub, kind, config)

    p = _stage_parser(sub, "evaluate", "score models and the baselines on test",
                      EvaluateConfig, "evaluate")
    p.add_argument("--prepared", required=True, help="augment's output folder (shards)")
    _add_model_flags(p)
    p.add_argument("--out", required=True, help="folder to write: metrics.json (DVC "
                   "metrics: metrics/NAME.json), metrics_all.json, per_genre.json, "
                   "bootstrap.json, thresholds.json, evaluation.html, plots/ (DVC plots), "
                   "scores/ (every movie's scores)")
    p.add_argument("--registry", help="registry (folder or s3://): its latest blessed model "
                   "is re-scored for the gate's comparison")
    p.add_argument("--data-dvc", default=None, help=".dvc file of the poster data, or the "
                   "poster folder: the report says what the data was (demo or real) and "
                   "its version, as register records them")
    p.set_defaults(inputs=(("prepared", MANIFEST, "augment"),))

    p = _stage_parser(sub, "gate", "bless a model only if it beats the baselines and the "
                      "last blessed model", GateConfig, "gate")
    p.add_argument("--evaluation", required=True, help="evaluate's --out folder")
    p.add_argument("--out", required=True, help="folder to write: blessing.json (the "
                   "decision, every rule, the served thresholds) and report.html "
                   "(evaluate's page opening with the decision)")

    p = _stage_parser(sub, "register", "copy the blessed model into the registry")
    p.add_argument("--blessing", required=True, help="the gate's blessing JSON")
    _add_model_flags(p)
    _add_params_files_flag(p, f"whose '{MODELS_SECTION}' names the models of --models-root")
    p.add_argument("--registry", required=True, help="registry folder or s3://bucket/prefix")
    p.add_argument("--data-version", default=None,
                   help="data version to record (default: read from --data-dvc)")
    p.add_argument("--data-dvc", default="data.dvc", help=".dvc file of the poster data (its "
                   "md5 is the version), or the poster folder itself (its content hash)")
    p.add_argument("--export", metavar="DIR", help="then copy the registry's latest entry "
                   "(verified: model/, thresholds.json) into DIR, the blessed model that "
                   "dvc.yaml's artifacts: names")

    p = _stage_parser(sub, "models", "list the models of a run (name, kind, what it is): "
                      "what dvc.yaml and the pipeline train")
    _add_params_files_flag(p, "")

    p = _stage_parser(sub, "params", "print a run's settings: its params files merged "
                      "(later wins) with --set applied, checked")
    add_params_flags(p, "override one setting, e.g. --set models.scratch_cnn.epochs=3")
    p.add_argument("--all", action="store_true", help="every setting of every stage and "
                   "model, defaults included (default: only what the files set)")

    p = _stage_parser(sub, "summary", "print the metrics table and the gate's decision")
    p.add_argument("--metrics", required=True, help="evaluate's metrics JSON")
    p.add_argument("--blessing", required=True, help="the gate's blessing JSON")
    p.add_argument("--bootstrap", help="bootstrap JSON, to print confidence intervals "
                   "(default: bootstrap.json beside --metrics)")
    p.add_argument("--registry", help="registry folder, to show what latest points at")

    p = _stage_parser(sub, "predict", "genres of posters (files, folders, http(s) URLs)")
    p.add_argument("posters", nargs="+", metavar="POSTER")
    p.add_argument("--model", help="a model folder or registry entry (default: the "
                   "registry's latest blessed model)")
    p.add_argument("--registry", default="registry", help="registry folder or s3:// URI")
    p.add_argument("--format", choices=("json", "table", "csv"), default=None,
                   help="output on stdout (default: table on a terminal, json when piped)")
    p.add_argument("--top-k", type=int, default=3, choices=range(1, 20), metavar="K",
                   help="genres ranked per poster, most probable first (1-19)")
    p.add_argument("--csv", help="also write every poster's genres, top-k and 19 "
                   "probabilities to this CSV file")
    p.add_argument("--explain", metavar="DIR", help="write a Grad-CAM overlay per poster "
                   "into DIR (its own aspect ratio, captioned with its top genre)")
    p.add_argument("--batch-size", type=int, default=32, help="posters per batch")
    p.set_defaults(inputs=(("model", "", ""),))

    p = _stage_parser(sub, "batch-predict", "score poster shards on Apache Beam (tfx-bsl "
                      "RunInference) into a Parquet table")
    p.add_argument("--model", default="registry", help="a registry (folder or s3://: its "
                   "latest blessed model), a registry entry or a trained model folder")
    p.add_argument("--prepared", help="prepared folder (augment's output) to score")
    p.add_argument("--split", default="test", help="split of --prepared to score")
    p.add_argument("--shards", help="glob of TFRecord files to score instead of --prepared")
    p.add_argument("--out", required=True, help="output folder (predictions-*.parquet, "
                   "errors.csv, summary.json)")
    p.add_argument("--thresholds", help="thresholds.json or blessing.json to use instead "
                   "of the registry entry's (else 0.5)")
    p.add_argument("--runner", default="DirectRunner", help="Beam runner (DataflowRunner, "
                   "FlinkRunner, SparkRunner, ...)")
    p.add_argument("--beam-arg", action="append", default=[], metavar="OPTION",
                   help="a Beam pipeline option passed through, e.g. --beam-arg=--project=p "
                   "(repeatable)")
    p.add_argument("--num-shards", type=int, default=0, help="output files (0: runner decides)")
    p.set_defaults(inputs=(("model", "", ""), ("prepared", MANIFEST, "augment"),
                           ("thresholds", "", "")))

    # `pipeline compile | run --local | submit | upload`: flags live beside the code.
    from postergenre.pipelines.commands import add_pipeline_parser

    add_pipeline_parser(sub, parents=[_verbosity_parent()])
    # `registry list | show | promote | rollback | history`: beside their code too.
    from postergenre.serving.registry_cli import add_registry_parser

    add_registry_parser(sub, parents=[_verbosity_parent()])
    parser.epilog = _command_listing(sub)
    return parser


def _add_params_files_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--params", metavar="FILE", action="append", default=None,
                   help=f"params file {what}; repeat for overlays, later files win "
                   f"(default: {DEFAULT_PARAMS})".replace("  ", " "))


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--model", action="append", metavar="NAME=DIR",
                       help="a trained model folder (repeat for each model)")
    group.add_argument("--models-root", metavar="DIR", help=f"every model named under "
                       f"'{MODELS_SECTION}' in the params file, each in DIR/NAME")


def _model_dirs(args: argparse.Namespace) -> dict[str, str]:
    """--model NAME=DIR pairs, or the run's model names under --models-root."""
    if args.model:
        return _model_pairs(args.model)
    models = section_of(load_run_params(args.params), MODELS_SECTION)
    if not isinstance(models, Mapping) or not models:
        raise ConfigError(f"{' + '.join(args.params or [DEFAULT_PARAMS])}: no "
                          f"'{MODELS_SECTION}' section to find the models of --models-root "
                          f"{args.models_root} by")
    return {str(name): str(Path(args.models_root) / str(name)) for name in models}


def model_config_from_args(kind: str, args: argparse.Namespace) -> Any:
    """A training command's ModelSpec: `models.NAME` of the params file (its kind must be
    this command's), then --set, then flags."""
    name = args.name
    section = f"{MODELS_SECTION}.{name}"
    entry: dict[str, Any] = {"kind": kind}
    params = load_run_params(args.params)
    origin = " + ".join(args.params or [DEFAULT_PARAMS])
    found = section_of(params, section)
    models = section_of(params, MODELS_SECTION)
    if found is None and isinstance(models, Mapping) and models:
        raise ConfigError(f"{origin}: no model {name!r} under '{MODELS_SECTION}'; "
                          f"known: {', '.join(map(str, models))}")
    if found is not None:
        if not isinstance(found, Mapping):
            raise ConfigError(f"{origin}: {section}: expected a mapping of settings")
        if found.get("kind") != kind:
            raise ConfigError(f"{origin}: {section}.kind is {found.get('kind')!r}; "
                              f"use `postergenre {train_command(str(found.get('kind')))}`")
        entry = dict(found)
    for text in args.overrides:
        key, value = parse_assignment(text)
        set_dotted(entry, key, value)
    for field, *_ in describe_fields(MODEL_KINDS[kind]):
        dest = "cfg__" + field
        if hasattr(args, dest):
            entry[field] = getattr(args, dest)
    return model_spec(name, entry)


def _summary(args: argparse.Namespace) -> int:
    from postergenre.evaluation.metrics import metrics_table

    metrics = json.loads(Path(args.metrics).read_text())
    blessing = json.loads(Path(args.blessing).read_text())
    print("Test-split metrics (thresholds chosen on validation; baselines: null = no genre, "
          "most_frequent / top3 = the training split's 1 / 3 most frequent genres):")
    print(metrics_table(metrics))
    # evaluate writes bootstrap.json beside metrics.json; read it there unless told.
    from postergenre.evaluation.layout import BOOTSTRAP_FILE

    bootstrap = Path(args.bootstrap or Path(args.metrics).with_name(BOOTSTRAP_FILE))
    if bootstrap.is_file():
        boot = json.loads(bootstrap.read_text())
        print(f"\n{int(boot['confidence'] * 100)}% paired bootstrap intervals "
              f"({boot['resamples']} resamples):")
        for name, intervals in boot["intervals"].items():
            cells = [f"{m} [{v['low']:.3f}, {v['high']:.3f}]" if v["low"] is not None
                     else f"{m} n/a" for m, v in intervals.items()]
            print(f"  {name:<14} " + "  ".join(cells))
        versus = boot.get("versus")
        if versus:
            print(f"\nAgainst {versus['model']} (model - {versus['model']}, same resamples):")
            for name, diffs in versus["differences"].items():
                cells = [f"{m} {v['estimate']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}]"
                         if v["low"] is not None else f"{m} n/a" for m, v in diffs.items()]
                print(f"  {name:<14} " + "  ".join(cells))
    if blessing["decision"] == "blessed":
        print(f"\nGate: BLESSED {blessing['model']}")
    else:
        print("\nGate: REJECTED every model")
    # One line per model: how many rules it passed, and each rule it failed (the full
    # list, with values and thresholds, is in the blessing file).
    by_model: dict[str, list[dict]] = {}
    for rule in blessing["rules"]:
        by_model.setdefault(rule["model"], []).append(rule)
    for model, rules in by_model.items():
        failed = [r for r in rules if not r["passed"]]
        print(f"  {model}: {len(rules) - len(failed)} of {len(rules)} rules pass")
        for rule in failed:
            value = "n/a" if rule["value"] is None else f"{rule['value']:.4f}"
            threshold = "" if rule["threshold"] is None else f" {rule['comparison']} " \
                f"{rule['threshold']:.4f}"
            print(f"    FAIL {rule['rule']}: {value}{threshold}")
    print(f"  (every rule: {args.blessing})")
    if args.registry and (Path(args.registry) / "latest.json").is_file():
        from postergenre.serving.registry import MODEL_FOLDER, read_latest

        latest = read_latest(args.registry)  # checked: JSON, and an entry of the registry
        if latest is not None:
            print(f"Registry latest: {Path(args.registry) / latest['entry'] / MODEL_FOLDER}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from postergenre.serving.predict import load_predictor, predict_posters
    from postergenre.serving.predict_output import (
        choose_format,
        format_json,
        format_table,
        prediction_document,
        write_csv,
        write_csv_file,
    )

    predictor = load_predictor(args.model, None if args.model else args.registry)
    results = predict_posters(predictor, args.poster_list, args.batch_size, args.explain)
    output = choose_format(args.format, sys.stdout)
    if output == "csv":
        write_csv(results, sys.stdout, args.top_k)
    else:
        document = prediction_document(predictor, results, args.top_k)
        print(format_json(document) if output == "json" else format_table(document))
    if args.csv:
        print(f"wrote {write_csv_file(results, args.csv, args.top_k)}", file=sys.stderr)
    failed = sum(r.error is not None for r in results)
    if failed:
        print(f"{failed} of {len(results)} posters could not be scored", file=sys.stderr)
    return 1 if failed else 0


def _batch_predict(args: argparse.Namespace) -> int:
    from postergenre.serving.batch_predict import batch_predict

    summary = batch_predict(args.model, args.out, prepared_dir=args.prepared, split=args.split,
                            shards=args.shards, thresholds_path=args.thresholds,
                            runner=args.runner, beam_args=args.beam_arg,
                            num_shards=args.num_shards)
    print(f"batch-predict: {summary['rows']} posters scored -> {args.out} "
          f"(thresholds: {summary['thresholds']})")
    if summary["errors"]:
        print(f"{summary['errors']} records could not be scored: see "
              f"{Path(args.out) / 'errors.csv'}", file=sys.stderr)
    return 1 if summary["errors"] else 0


def _pipeline(args: argparse.Namespace) -> int:
    from postergenre.pipelines.commands import run_pipeline_command

    return run_pipeline_command(args)


def _print_params(args: argparse.Namespace) -> int:
    """The run's settings as YAML: what its files set, or with --all every value."""
    import yaml

    from postergenre.configs import experiment_from_params

    params = load_run_params(args.params, args.overrides)
    origin = " + ".join(args.params or [DEFAULT_PARAMS])
    experiment = experiment_from_params(params, origin)  # checked either way
    shown = experiment.sections() if args.all else params
    print(f"# {origin}" + "".join(f" --set {o}" for o in args.overrides)
          + (" (every setting)" if args.all else ""))
    print(yaml.safe_dump(shown, sort_keys=False, allow_unicode=True), end="")
    return 0


def _log_settings(stage: str, config: Any) -> None:
    from postergenre.typed_config import to_mapping

    logging.getLogger("postergenre.cli").info("%s settings: %s", stage,
                                              json.dumps(to_mapping(config)))


def _train(args: argparse.Namespace) -> int:
    from postergenre.training.train import train_model

    spec = args.spec
    info = train_model(args.prepared, args.out, spec, args.data_version, args.checkpoint_dir,
                       args.live)
    resumed = (f", resumed after epoch {info['resumed_from_epoch']}"
               if info.get("resumed_from_epoch") else "")
    print(f"{spec.name} ({spec.describe()}): {info['epochs_run']} epochs on {info['device']}"
          f"{resumed}, "
          f"best val_loss {info['best_val_loss']:.4f} at epoch {info['best_epoch']} "
          f"-> {args.out}")
    return 0


def run(args: argparse.Namespace) -> int:  # noqa: C901 - a flat dispatch table
    """Run the command whose arguments `check_arguments` has checked."""
    cmd = args.command
    if cmd == "ingest":
        from postergenre.sources.ingest import ingest

        summary = ingest(args.source, args.out, args.config, data_version=args.data_version,
                         report_path=args.report)
        print(f"ingest ({args.source}): " + ", ".join(
            f"{k} {v}" for k, v in summary.items() if isinstance(v, (int, float, str))))
    elif cmd == "validate":
        from postergenre.validation.validate import validate_dataset

        summary = validate_dataset(args.data, args.out, args.config, metrics_path=args.metrics,
                                   docs_path=args.docs)
        print(f"validate: {summary['rows_in']} rows in, {summary['rows_kept']} kept, "
              f"{summary['rows_rejected']} rejected"
              + (f" {summary['rejects']}" if summary["rejects"] else ""))
    elif cmd == "split":
        from postergenre.data.split import split_dataset

        manifest = split_dataset(args.labels, args.out, args.config)
        print("split: " + ", ".join(f"{k} {v}" for k, v in manifest["counts"].items())
              + " movies")
    elif cmd == "augment":
        from postergenre.data.augment import augment_and_shard

        manifest = augment_and_shard(args.data, args.split, args.out, args.config)
        print("augment: " + ", ".join(f"{k} {v['records']}" for k, v in
                                      manifest["counts"].items())
              + f" records at {args.config.image_size} px")
    elif cmd in TRAIN_COMMANDS:
        return _train(args)
    elif cmd == "evaluate":
        from postergenre.evaluation.evaluate import evaluate_models

        data_version = data_source = None
        if args.data_dvc:
            from postergenre.serving.registry import data_source_of, data_version_of

            data_version = data_version_of(args.data_dvc)
            data_source = data_source_of(args.data_dvc, data_version)
        headline = evaluate_models(args.prepared, args.model_dirs, args.out, args.config,
                                   registry=args.registry, data_version=data_version,
                                   data_source=data_source)
        print("evaluate: " + ", ".join(f"{name} mAP {values['map_macro']:.3f}"
                                       for name, values in headline.items()))
    elif cmd == "gate":
        from postergenre.evaluation.gate import gate

        decision = gate(args.evaluation, args.out, args.config)
        print(f"gate: {decision}")
    elif cmd == "register":
        from postergenre.lineage import local_model_lineages
        from postergenre.serving.registry import data_source_of, data_version_of, register

        version = args.data_version or data_version_of(args.data_dvc)
        model_dirs = _model_dirs(args)
        lineage = local_model_lineages(model_dirs, load_run_params(args.params), version,
                                       args.data_dvc)
        entry = register(args.blessing, model_dirs, args.registry, version,
                         data_source_of(args.data_dvc, version), lineage=lineage)
        print(f"registered {entry}" if entry else "not blessed: nothing registered")
        if args.export:
            from postergenre.serving.registry import export_latest

            record = export_latest(args.registry, args.export)
            print(f"exported {record['entry'] or 'nothing (the registry is empty)'} -> "
                  f"{args.export}")
    elif cmd == "models":
        from postergenre.configs import model_specs

        for spec in model_specs(section_of(load_run_params(args.params), MODELS_SECTION)):
            print(f"{spec.name} {spec.kind} {spec.describe()}")
    elif cmd == "params":
        return _print_params(args)
    elif cmd == "predict":
        return _predict(args)
    elif cmd == "batch-predict":
        return _batch_predict(args)
    elif cmd == "summary":
        return _summary(args)
    elif cmd == "pipeline":
        return _pipeline(args)
    elif cmd == "registry":
        from postergenre.serving.registry_cli import run_registry_command

        return run_registry_command(args)
    return 0


# Commands that load TensorFlow (its native start-up lines are hidden unless -v).
TENSORFLOW_COMMANDS = ("evaluate", "predict", "batch-predict", *TRAIN_COMMANDS)
# The stages whose settings are one config class, read from their params.yaml section.
STAGE_CONFIGS: dict[str, type] = {"ingest": IngestConfig, "validate": ValidateConfig,
                                  "split": SplitConfig, "augment": AugmentConfig,
                                  "evaluate": EvaluateConfig, "gate": GateConfig}


def _require(flag: str, value: str, holds: str, made_by: str) -> None:
    """`value`, a path given to `flag`, exists (and holds the file `holds`, which the stage
    `made_by` writes); a URL is left to the command."""
    if is_remote(value):  # s3://, http(s)://, ...
        return
    path = Path(value)
    if holds and not (path / holds).is_file():
        raise FileNotFoundError(f"{path / holds} not found: is {path} the output of "
                                f"{made_by}?")
    if not path.exists():
        raise FileNotFoundError(f"{flag} {path}: no such file or folder")


def check_arguments(args: argparse.Namespace) -> None:
    """What can be checked of a command line before its work starts, and before
    TensorFlow loads (15-40 s): the stage's settings (into `args.config`, or a training's
    `args.spec`), the paths it reads (declared beside their flags: `inputs`), evaluate's
    model folders (`args.model_dirs`) and predict's registry. A problem is one error line
    at once."""
    cmd = args.command
    if cmd in STAGE_CONFIGS:
        args.config = config_from_args(STAGE_CONFIGS[cmd], cmd, args)
        _log_settings(cmd, args.config)
    elif cmd in TRAIN_COMMANDS:
        args.spec = model_config_from_args(TRAIN_COMMANDS[cmd], args)
        _log_settings(f"{MODELS_SECTION}.{args.spec.name}", args.spec.config)
    for dest, holds, made_by in getattr(args, "inputs", ()):
        if getattr(args, dest) is not None:
            _require(f"--{dest}", getattr(args, dest), holds, made_by)
    if cmd == "evaluate":
        args.model_dirs = _model_dirs(args)
        for folder in args.model_dirs.values():
            _require("--model" if args.model else "--models-root", folder, "", "")
    if cmd == "predict":
        from postergenre.serving.predict import (
            expand_posters,
            is_web_url,
            require_blessed_model,
        )

        if args.model is None:
            require_blessed_model(args.registry)
        # A poster that cannot be read is an error on its own row, the others are scored;
        # but with nothing to score there is no reason to start.
        args.poster_list = expand_posters(args.posters)
        if not args.poster_list:
            raise ValueError(f"no poster found in {' '.join(args.posters)}")
        if not any(is_web_url(p) or Path(p).exists() for p in args.poster_list):
            raise FileNotFoundError(f"no such poster: {', '.join(args.poster_list)}")


def load_tensorflow_quietly() -> None:
    """Import TensorFlow and look for GPUs with the process's native stderr captured.

    TensorFlow's C++ side prints several lines before its logging is set up (absl's
    "All log messages before absl::InitializeLog()", the CUDA stub's "Could not find cuda
    drivers", cuInit's error on a machine without a GPU); TF_CPP_MIN_LOG_LEVEL cannot
    reach them. They are kept and printed only if the import fails.
    """
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
        except Exception:  # (a Ctrl-C is one line: main's)
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def configure_logging(verbosity: int) -> None:
    """Quiet by default (warnings and errors); -v: INFO; -vv: DEBUG."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 \
        else logging.DEBUG
    # By default one line style with the stages' own ("warning: ..."); with -v, the time
    # and the logger of each line.
    quiet = "%(levelname)s: %(message)s"
    logging.basicConfig(level=level, force=True, format=quiet if verbosity <= 0
                        else "%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbosity <= 0:
        for number in (logging.WARNING, logging.ERROR, logging.CRITICAL):
            logging.addLevelName(number, logging.getLevelName(number).lower())
    # Some libraries set their own loggers' levels (great-expectations logs at INFO
    # whatever the root says): the handler itself drops what is below the chosen level.
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)
    # Python warnings (Keras' and TensorFlow's deprecation and data-adapter notices) go
    # through logging, shown from -v on: they say nothing about the user's data.
    logging.captureWarnings(True)
    if verbosity < 2:
        # tfx-bsl logs every feature of the schema through absl at INFO on each read, and
        # great-expectations logs each step of a validation at INFO.
        for noisy in ("absl", "great_expectations", "apache_beam"):
            logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    if verbosity < 1:
        for chatty in ("py.warnings", "tensorflow"):
            logging.getLogger(chatty).setLevel(logging.ERROR)


def interrupted(args: argparse.Namespace) -> str:
    """What a Ctrl-C leaves, in one line: a training names the last epoch its checkpoint
    holds, which the same command resumes after; a stage whose output is swapped in whole
    left it as it was."""
    cmd = args.command
    out = getattr(args, "out", None)
    if cmd in TRAIN_COMMANDS and issubclass(MODEL_KINDS[TRAIN_COMMANDS[cmd]], TrainingConfig):
        from postergenre.training.checkpoint import STATE_FILE, default_checkpoint_dir

        given = args.checkpoint_dir
        folder = (Path(given) if given and not is_remote(given)
                  else default_checkpoint_dir(args.out))
        try:
            epochs = len(json.loads((folder / STATE_FILE).read_text())["history"])
        except (OSError, ValueError, KeyError, TypeError):
            epochs = 0
        if epochs:
            return (f"interrupted after epoch {epochs}; the same command resumes from its "
                    f"checkpoint ({given or folder})")
        return f"interrupted before an epoch ended; {out} is as it was, and the same " \
            "command starts over"
    if cmd in TRAIN_COMMANDS or cmd == "augment":
        return f"interrupted; {out} is as it was, and the same command starts over"
    if cmd == "ingest" and args.source == "tmdb":
        return "interrupted; the same command resumes the crawl from its cache"
    if out is not None:
        return "interrupted; the same command runs it again"
    return "interrupted"


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        # From the command line (DVC's stages): a fixed string-hash seed, so that what a
        # command writes does not change from run to run (reproducible.py).
        from postergenre.reproducible import fixed_hash_seed

        fixed_hash_seed("postergenre.cli")
    parser = build_parser()
    args = parser.parse_args(argv)
    verbosity = getattr(args, "verbose", 0)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL_BY_VERBOSITY[min(verbosity, 2)])
    configure_logging(verbosity)
    try:
        check_arguments(args)  # before TensorFlow's start-up
        if verbosity < 1 and args.command in TENSORFLOW_COMMANDS:
            load_tensorflow_quietly()
        return run(args)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    except (ValueError, KeyError, OSError, FolderBusyError) as err:
        # Bad input, or a file that cannot be read or written (not found, a full disk, no
        # permission): one clear line naming the file / row / field / key, no traceback.
        # (ConfigError is a ValueError.)
        said = (f"{err.filename}: {err.strerror}"
                if isinstance(err, OSError) and err.filename is not None and err.strerror
                else str(err))
        print(f"postergenre {args.command}: error: {said}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C: one line saying what is left and what the same command does, not
        # TensorFlow's traceback; 130, the shell's code for a SIGINT. (A second Ctrl-C
        # while the line is written is ignored.)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(f"postergenre {args.command}: {interrupted(args)}", file=sys.stderr, flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
