"""`postergenre`: one subcommand per pipeline stage, plus summary and pipeline tools.

`dvc.yaml` calls these subcommands; each one parses its flags and calls one library
function, nothing more.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# TensorFlow's C++ start-up chatter hides the stage's own output; keep warnings and errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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


def _comma_list(value: str) -> list[str]:
    """`Sci-Fi,War` -> ['Sci-Fi', 'War'] (dvc.yaml cannot interpolate a YAML list)."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _add_training_flags(p: argparse.ArgumentParser, epochs: int, learning_rate: float) -> None:
    p.add_argument("--prepared", required=True, help="augment's output folder (shards)")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=learning_rate)
    p.add_argument("--momentum", type=float, default=0.9, help="SGD Nesterov momentum")
    p.add_argument("--lr-factor", type=float, default=0.1, help="ReduceLROnPlateau factor")
    p.add_argument("--lr-patience", type=int, default=15, help="ReduceLROnPlateau patience")
    p.add_argument("--min-lr", type=float, default=1e-6)
    p.add_argument("--stop-patience", type=int, default=20, help="EarlyStopping patience")
    p.add_argument("--no-class-weights", dest="use_class_weights", action="store_false",
                   help="train with unweighted binary cross-entropy")
    p.add_argument("--seed", type=int, default=0)


def _training_kwargs(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in (
        "epochs", "batch_size", "learning_rate", "momentum", "lr_factor", "lr_patience",
        "min_lr", "stop_patience", "use_class_weights", "seed")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postergenre",
        description="Predict a movie's genres from its poster. Each subcommand is one "
        "pipeline stage (what dvc.yaml and the Kubeflow components run).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="write a poster data set (labels.csv + posters/)")
    p.add_argument("--source", choices=["demo"], default="demo",
                   help="demo: synthetic posters generated offline from a seed")
    p.add_argument("--out", required=True, help="data set folder to write (e.g. data)")
    p.add_argument("--n-posters", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--height", type=int, default=144)

    p = sub.add_parser("validate", help="check the labels table and posters (great-expectations)")
    p.add_argument("--data", required=True, help="data set folder (labels.csv + posters/)")
    p.add_argument("--out", required=True, help="folder for kept labels, rejects, summary")
    p.add_argument("--max-listed", type=int, default=10, help="offenders listed per rule")

    p = sub.add_parser("split", help="train/validation/test by movie, before augmentation")
    p.add_argument("--labels", required=True, help="validated labels.csv (or its folder)")
    p.add_argument("--out", required=True)
    p.add_argument("--train-fraction", type=float, default=0.6)
    p.add_argument("--validation-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=42)

    p = sub.add_parser("augment", help="resize into shards; add flipped minority posters "
                       "to the training split only")
    p.add_argument("--data", required=True, help="data set folder the posters are in")
    p.add_argument("--split", required=True, help="split's output folder")
    p.add_argument("--out", required=True)
    p.add_argument("--minority-genres", type=_comma_list, default=None,
                   help="comma-separated genres whose training posters are added again "
                   "flipped (default: the study's list; '' for none)")
    p.add_argument("--image-size", type=int, default=64, help="square side in pixels")
    p.add_argument("--shard-size", type=int, default=1000, help="records per shard")
    p.add_argument("--max-class-weight", type=float, default=10.0)

    p = sub.add_parser("train-scratch", help="train the study's CNN from scratch")
    _add_training_flags(p, epochs=100, learning_rate=0.1)
    p.add_argument("--conv1-filters", type=int, default=64)
    p.add_argument("--conv2-filters", type=int, default=128)
    p.add_argument("--dense-units", type=int, default=256)
    p.add_argument("--input-dropout", type=float, default=0.2)
    p.add_argument("--conv-dropout", type=float, default=0.25, help="after each max-pool")
    p.add_argument("--dense-dropout", type=float, default=0.5, help="after each dense layer")

    p = sub.add_parser("train-vgg16", help="train a dense head on a frozen VGG16 base")
    _add_training_flags(p, epochs=50, learning_rate=0.01)
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet' (downloads), 'none' (random, offline) or a weights file")
    p.add_argument("--dense-units", type=int, default=4096)

    p = sub.add_parser("evaluate", help="score models and the null model on test")
    p.add_argument("--prepared", required=True)
    p.add_argument("--model", action="append", required=True, metavar="NAME=DIR",
                   help="a trained model folder (repeat for each model)")
    p.add_argument("--metrics", required=True, help="headline metrics JSON (DVC metrics)")
    p.add_argument("--per-genre", required=True, help="per-genre metrics JSON")
    p.add_argument("--plots", required=True, help="folder for ROC curves (DVC plots)")
    p.add_argument("--batch-size", type=int, default=64)

    p = sub.add_parser("gate", help="bless a model only if it beats the null model")
    p.add_argument("--metrics", required=True)
    p.add_argument("--blessing", required=True, help="blessing JSON to write")
    p.add_argument("--min-f1-micro-margin", type=float, default=0.05)
    p.add_argument("--min-map-margin", type=float, default=0.05)
    p.add_argument("--max-hamming-loss-increase", type=float, default=0.0)

    p = sub.add_parser("register", help="copy the blessed model into the registry")
    p.add_argument("--blessing", required=True)
    p.add_argument("--model", action="append", required=True, metavar="NAME=DIR")
    p.add_argument("--registry", required=True, help="registry folder")

    p = sub.add_parser("summary", help="print the metrics table and the gate's decision")
    p.add_argument("--metrics", required=True)
    p.add_argument("--blessing", required=True)
    p.add_argument("--registry", help="registry folder, to show what latest points at")

    p = sub.add_parser("pipeline", help="compile or run the Kubeflow pipeline")
    psub = p.add_subparsers(dest="pipeline_command", required=True, metavar="ACTION")
    c = psub.add_parser("compile", help="write the pipeline's YAML IR")
    c.add_argument("--output", default="pipeline.yaml")
    c.add_argument("--image", default=None, help="image for the components (default: "
                   "the project's published image)")
    r = psub.add_parser("run", help="run the whole pipeline")
    r.add_argument("--local", action="store_true", required=True,
                   help="run with kfp.local's SubprocessRunner, no cluster")
    r.add_argument("--pipeline-root", default="outputs/kfp-local",
                   help="where local artifacts go")
    r.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="pipeline parameter (repeatable), e.g. -p n_posters=60")
    return parser


def _summary(args: argparse.Namespace) -> int:
    from postergenre.metrics import metrics_table

    metrics = json.loads(Path(args.metrics).read_text())
    blessing = json.loads(Path(args.blessing).read_text())
    print("Test-split metrics (thresholds chosen on validation; null = predicts no genre):")
    print(metrics_table(metrics))
    if blessing["decision"] == "blessed":
        print(f"\nGate: BLESSED {blessing['model']}")
    else:
        print("\nGate: REJECTED every model")
        for line in blessing["failed_rules"]:
            print(f"  - {line}")
    if args.registry and (Path(args.registry) / "latest.json").is_file():
        latest = json.loads((Path(args.registry) / "latest.json").read_text())
        print(f"Registry latest: {Path(args.registry) / latest['path']}")
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    from postergenre.pipelines import runner

    if args.pipeline_command == "compile":
        path = runner.compile_pipeline(args.output, image=args.image)
        print(f"wrote {path}")
        return 0
    params = runner.parse_params(args.param)
    outputs = runner.run_local(args.pipeline_root, **params)
    print(json.dumps(outputs, indent=2))
    return 0


def run(args: argparse.Namespace) -> int:  # noqa: C901 - a flat dispatch table
    cmd = args.command
    if cmd == "ingest":
        from postergenre.ingest import ingest

        summary = ingest(args.source, args.out, n_posters=args.n_posters, seed=args.seed,
                         width=args.width, height=args.height)
        print(json.dumps(summary, indent=2))
    elif cmd == "validate":
        from postergenre.validate import validate_dataset

        validate_dataset(args.data, args.out, max_listed=args.max_listed)
    elif cmd == "split":
        from postergenre.split import split_dataset

        split_dataset(args.labels, args.out, args.train_fraction, args.validation_fraction,
                      args.seed)
    elif cmd == "augment":
        from postergenre.augment import STUDY_MINORITY_GENRES, augment_and_shard

        minority = STUDY_MINORITY_GENRES if args.minority_genres is None else args.minority_genres
        augment_and_shard(args.data, args.split, args.out, minority, args.image_size,
                          args.shard_size, max_class_weight=args.max_class_weight)
    elif cmd == "train-scratch":
        from postergenre.train import train_scratch

        train_scratch(args.prepared, args.out, conv1_filters=args.conv1_filters,
                      conv2_filters=args.conv2_filters, dense_units=args.dense_units,
                      input_dropout=args.input_dropout, conv_dropout=args.conv_dropout,
                      dense_dropout=args.dense_dropout, **_training_kwargs(args))
    elif cmd == "train-vgg16":
        from postergenre.train import train_vgg16

        train_vgg16(args.prepared, args.out, weights=args.weights,
                    dense_units=args.dense_units, **_training_kwargs(args))
    elif cmd == "evaluate":
        from postergenre.evaluate import evaluate_models

        evaluate_models(args.prepared, _model_pairs(args.model), args.metrics,
                        args.per_genre, args.plots, args.batch_size)
    elif cmd == "gate":
        from postergenre.gate import gate

        decision = gate(args.metrics, args.blessing, args.min_f1_micro_margin,
                        args.min_map_margin, args.max_hamming_loss_increase)
        print(f"gate: {decision}")
    elif cmd == "register":
        from postergenre.registry import register

        entry = register(args.blessing, _model_pairs(args.model), args.registry)
        print(f"registered {entry}" if entry else "not blessed: nothing registered")
    elif cmd == "summary":
        return _summary(args)
    elif cmd == "pipeline":
        return _pipeline(args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    except (ValueError, FileNotFoundError, KeyError) as err:
        # Bad input: one clear line naming the file / row / field, no traceback.
        print(f"postergenre {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
