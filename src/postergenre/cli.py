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
    p.add_argument("--require-gpu", action="store_true",
                   help="fail at once when TensorFlow sees no GPU (for GPU node pools)")
    p.add_argument("--data-version", default="",
                   help="the data version trained on (e.g. data.dvc's md5), for metadata")


def _genre_floats(value: str) -> dict[str, float]:
    """`Drama=0.3,Comedy=0.2` -> {'Drama': 0.3, 'Comedy': 0.2} ('' -> {})."""
    floors: dict[str, float] = {}
    for item in _comma_list(value):
        genre, sep, number = item.partition("=")
        try:
            floors[genre.strip()] = float(number)
        except ValueError:
            sep = ""
        if not sep:
            raise argparse.ArgumentTypeError(f"expected GENRE=NUMBER, got {item!r}")
    return floors


def _training_kwargs(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in (
        "epochs", "batch_size", "learning_rate", "momentum", "lr_factor", "lr_patience",
        "min_lr", "stop_patience", "use_class_weights", "seed", "require_gpu",
        "data_version")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postergenre",
        description="Predict a movie's genres from its poster. Each subcommand is one "
        "pipeline stage (what dvc.yaml and the Kubeflow components run).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="write a poster data set (labels.csv + posters/)")
    p.add_argument("--source", choices=["demo", "tmdb", "local", "dvc"], default="demo",
                   help="demo: synthetic posters generated offline from a seed; tmdb: "
                   "MovieLens ids -> TMDb posters (needs TMDB_API_KEY or "
                   "TMDB_READ_ACCESS_TOKEN in the environment); local: a poster folder + "
                   "labels CSV; dvc: a data version pulled from a DVC remote")
    p.add_argument("--out", required=True, help="data set folder to write (e.g. data)")
    g = p.add_argument_group("demo")
    g.add_argument("--n-posters", type=int, default=1500)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--width", type=int, default=96)
    g.add_argument("--height", type=int, default=144)
    g = p.add_argument_group("tmdb")
    g.add_argument("--movielens-release", default="ml-latest-small",
                   choices=["ml-latest-small", "ml-latest", "ml-25m"])
    g.add_argument("--movielens-url", default=None, help="base URL of the MovieLens zips")
    g.add_argument("--movielens-md5", default=None,
                   help="expected zip MD5 (default: the published .md5 file)")
    g.add_argument("--tmdb-api-url", default=None, help="TMDb API base URL (default: "
                   "https://api.themoviedb.org/3)")
    g.add_argument("--tmdb-image-url", default=None, help="TMDb image base URL (default: "
                   "https://image.tmdb.org/t/p)")
    g.add_argument("--poster-size", default="w500",
                   choices=["w92", "w154", "w185", "w342", "w500", "w780", "original"])
    g.add_argument("--label-source", default="tmdb", choices=["tmdb", "movielens", "union"])
    g.add_argument("--max-movies", type=int, default=None, help="first N MovieLens movies")
    g.add_argument("--rate-limit", type=float, default=20.0, help="requests per second")
    g.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    g.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    g.add_argument("--retries", type=int, default=5, help="retries per request")
    g.add_argument("--cache-dir", default=None,
                   help="downloads and crawl state (default: ~/.cache/postergenre)")
    g.add_argument("--report", default=None, help="ingest report JSON to write")
    g = p.add_argument_group("local")
    g.add_argument("--local-dir", default=None, help="folder holding the posters")
    g.add_argument("--labels-csv", default=None, help="default: LOCAL_DIR/labels.csv")
    g = p.add_argument_group("dvc")
    g.add_argument("--data-version", default=None,
                   help="the md5 in data.dvc, or a git revision of --repo")
    g.add_argument("--remote-url", default=None, help="DVC remote, e.g. s3://bucket/path")
    g.add_argument("--endpoint-url", default=None, help="S3 endpoint (MinIO, Ceph, ...)")
    g.add_argument("--repo", default=".", help="git repository holding data.dvc")

    p = sub.add_parser("validate", help="check the labels table and posters (great-expectations)")
    p.add_argument("--data", required=True, help="data set folder (labels.csv + posters/)")
    p.add_argument("--out", required=True, help="folder for kept labels, rejects, summary")
    p.add_argument("--max-listed", type=int, default=10, help="offenders listed per rule")
    p.add_argument("--metrics", default=None, help="rows in/kept/rejected JSON (DVC metrics; "
                   "default OUT/metrics.json)")
    p.add_argument("--docs", default=None, help="Data Docs HTML (default OUT/data_docs.html)")
    p.add_argument("--soft-rules", type=_comma_list, default=None,
                   help="comma-separated rules whose rows go to rejects.csv instead of stopping")
    p.add_argument("--warn-rules", type=_comma_list, default=None,
                   help="comma-separated rules that are only reported")
    p.add_argument("--max-reject-fraction", type=float, default=0.05,
                   help="stop when soft rules would reject more than this share of rows")
    p.add_argument("--min-genre-support", type=int, default=1)
    p.add_argument("--min-width", type=int, default=32)
    p.add_argument("--min-height", type=int, default=32)
    p.add_argument("--min-aspect", type=float, default=1.0, help="height / width")
    p.add_argument("--max-aspect", type=float, default=2.0)
    p.add_argument("--min-file-bytes", type=int, default=1)
    p.add_argument("--max-file-bytes", type=int, default=20_000_000)
    p.add_argument("--max-pixels", type=int, default=40_000_000)
    p.add_argument("--duplicate-distance", type=int, default=4,
                   help="perceptual-hash bits within which posters are near-duplicates "
                   "(-1: off)")

    p = sub.add_parser("split", help="train/validation/test by movie, before augmentation")
    p.add_argument("--labels", required=True, help="validated labels.csv (or its folder)")
    p.add_argument("--out", required=True)
    p.add_argument("--train-fraction", type=float, default=0.6)
    p.add_argument("--validation-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=42)

    p = sub.add_parser("augment", help="resize into shards; upsample rare genres in the "
                       "training split only")
    p.add_argument("--data", required=True, help="data set folder the posters are in")
    p.add_argument("--split", required=True, help="split's output folder")
    p.add_argument("--out", required=True)
    p.add_argument("--transforms", type=_comma_list, default=["hflip", "crop", "jitter"],
                   help="comma-separated, from hflip, crop, jitter")
    p.add_argument("--max-upsample", type=float, default=3.0,
                   help="cap on a training poster's copies in all (1: no upsampling)")
    p.add_argument("--image-size", type=int, default=64, help="square side in pixels")
    p.add_argument("--shard-size", type=int, default=1000, help="records per shard")
    p.add_argument("--max-class-weight", type=float, default=10.0)
    p.add_argument("--crop-min-scale", type=float, default=0.85)
    p.add_argument("--jitter", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("train-scratch", help="train the study's CNN from scratch")
    _add_training_flags(p, epochs=100, learning_rate=0.1)
    p.add_argument("--conv1-filters", type=int, default=64)
    p.add_argument("--conv2-filters", type=int, default=128)
    p.add_argument("--dense-units", type=int, default=256)
    p.add_argument("--input-dropout", type=float, default=0.2)
    p.add_argument("--conv-dropout", type=float, default=0.25, help="after each max-pool")
    p.add_argument("--dense-dropout", type=float, default=0.5, help="after each dense layer")
    p.add_argument("--clipnorm", type=float, default=0.0,
                   help="clip each gradient's norm to this (0: off, as in the study)")

    p = sub.add_parser("train-vgg16", help="train a dense head on a frozen VGG16 (or "
                       "EfficientNet-Lite0) base")
    _add_training_flags(p, epochs=50, learning_rate=0.01)
    p.add_argument("--backbone", choices=["vgg16", "efficientnet_lite0"], default="vgg16",
                   help="frozen pretrained base (efficientnet_lite0's ImageNet weights come "
                   "with the package, offline)")
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet' (VGG16: Keras downloads it; Lite0: from the package), "
                   "'none' (random), a weights file, or an s3:// URI")
    p.add_argument("--dense-units", type=int, default=4096)
    p.add_argument("--fine-tune-epochs", type=int, default=0,
                   help="second phase: epochs with the base's last block unfrozen")
    p.add_argument("--fine-tune-learning-rate", type=float, default=1e-4)

    p = sub.add_parser("evaluate", help="score models and the null model on test")
    p.add_argument("--prepared", required=True)
    p.add_argument("--model", action="append", required=True, metavar="NAME=DIR",
                   help="a trained model folder (repeat for each model)")
    p.add_argument("--metrics", required=True, help="headline metrics JSON (DVC metrics)")
    p.add_argument("--per-genre", required=True, help="per-genre metrics JSON")
    p.add_argument("--plots", required=True, help="folder for ROC / PR curves (DVC plots)")
    p.add_argument("--bootstrap", help="bootstrap intervals JSON to write")
    p.add_argument("--thresholds", help="decision thresholds JSON to write")
    p.add_argument("--report", help="HTML report to write")
    p.add_argument("--registry", help="registry (folder or s3://): its latest blessed model "
                   "is re-scored for the gate's comparison")
    p.add_argument("--resamples", type=int, default=200, help="paired bootstrap resamples")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--report-posters", type=int, default=12,
                   help="test posters (with Grad-CAM) in the report")
    p.add_argument("--batch-size", type=int, default=64)

    p = sub.add_parser("gate", help="bless a model only if it beats the baselines and the "
                       "last blessed model")
    p.add_argument("--metrics", required=True)
    p.add_argument("--blessing", required=True, help="blessing JSON to write")
    p.add_argument("--per-genre", help="per-genre metrics JSON (per-genre rules)")
    p.add_argument("--bootstrap", help="bootstrap JSON (comparison with the last blessed)")
    p.add_argument("--thresholds", help="thresholds JSON (copied into the blessing)")
    p.add_argument("--min-f1-micro-margin", type=float, default=0.05)
    p.add_argument("--min-map-margin", type=float, default=0.05)
    p.add_argument("--max-hamming-loss-increase", type=float, default=0.0)
    p.add_argument("--min-f1-micro", type=float, default=0.0, help="floor on micro-F1")
    p.add_argument("--min-map-macro", type=float, default=0.0, help="floor on mAP")
    p.add_argument("--epsilon", type=float, default=0.02,
                   help="allowed drop against the last blessed model (bootstrap lower bound)")
    p.add_argument("--genre-ap-floors", type=_genre_floats, default={},
                   help="per-genre AP floors, e.g. 'Drama=0.3,Comedy=0.2' ('' for none)")
    p.add_argument("--max-genre-ap-drop", type=float, default=-1.0,
                   help="maximum per-genre AP drop against the last blessed (negative: off)")

    p = sub.add_parser("register", help="copy the blessed model into the registry")
    p.add_argument("--blessing", required=True)
    p.add_argument("--model", action="append", required=True, metavar="NAME=DIR")
    p.add_argument("--registry", required=True, help="registry folder or s3://bucket/prefix")
    p.add_argument("--data-version", default=None,
                   help="data version to record (default: the md5 in --data-dvc)")
    p.add_argument("--data-dvc", default="data.dvc", help=".dvc file of the poster data")

    p = sub.add_parser("summary", help="print the metrics table and the gate's decision")
    p.add_argument("--metrics", required=True)
    p.add_argument("--blessing", required=True)
    p.add_argument("--bootstrap", help="bootstrap JSON, to print confidence intervals")
    p.add_argument("--registry", help="registry folder, to show what latest points at")

    p = sub.add_parser("predict", help="genres of posters (files, folders, http(s) URLs)")
    p.add_argument("posters", nargs="+", metavar="POSTER")
    p.add_argument("--model", help="a model folder or registry entry (default: the "
                   "registry's latest blessed model)")
    p.add_argument("--registry", default="registry", help="registry folder or s3:// URI")
    p.add_argument("--csv", help="write every poster's 19 probabilities to this CSV")
    p.add_argument("--explain", metavar="DIR", help="write Grad-CAM overlays into DIR")
    p.add_argument("--batch-size", type=int, default=32)

    p = sub.add_parser("batch-predict", help="score poster shards on Apache Beam (tfx-bsl "
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

    # `pipeline compile | run --local | submit | upload`: flags live beside the code.
    from postergenre.pipelines.commands import add_pipeline_parser

    add_pipeline_parser(sub)
    return parser


def _summary(args: argparse.Namespace) -> int:
    from postergenre.metrics import metrics_table

    metrics = json.loads(Path(args.metrics).read_text())
    blessing = json.loads(Path(args.blessing).read_text())
    print("Test-split metrics (thresholds chosen on validation; baselines: null = no genre, "
          "most_frequent / top3 = the training split's 1 / 3 most frequent genres):")
    print(metrics_table(metrics))
    # evaluate writes bootstrap.json beside metrics.json; read it there unless told.
    bootstrap = Path(args.bootstrap or Path(args.metrics).with_name("bootstrap.json"))
    if bootstrap.is_file():
        boot = json.loads(bootstrap.read_text())
        print(f"\n{int(boot['confidence'] * 100)}% paired bootstrap intervals "
              f"({boot['resamples']} resamples):")
        for name, intervals in boot["intervals"].items():
            cells = [f"{m} [{v['low']:.3f}, {v['high']:.3f}]" if v["low"] is not None
                     else f"{m} n/a" for m, v in intervals.items()]
            print(f"  {name:<14} " + "  ".join(cells))
    if blessing["decision"] == "blessed":
        print(f"\nGate: BLESSED {blessing['model']}")
    else:
        print("\nGate: REJECTED every model")
    for rule in blessing["rules"]:
        mark = "pass" if rule["passed"] else "FAIL"
        value = "n/a" if rule["value"] is None else f"{rule['value']:.4f}"
        threshold = "" if rule["threshold"] is None else f" {rule['comparison']} " \
            f"{rule['threshold']:.4f}"
        print(f"  {mark} {rule['model']}: {rule['rule']} {value}{threshold}")
    if args.registry and (Path(args.registry) / "latest.json").is_file():
        latest = json.loads((Path(args.registry) / "latest.json").read_text())
        print(f"Registry latest: {Path(args.registry) / latest['path']}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from postergenre.predict import (
        expand_posters,
        format_result,
        load_predictor,
        predict_posters,
        write_predictions_csv,
    )

    predictor = load_predictor(args.model, None if args.model else args.registry)
    posters = expand_posters(args.posters)
    if not posters:
        raise ValueError(f"no poster found in {args.posters}")
    results = predict_posters(predictor, posters, args.batch_size, args.explain)
    for result in results:
        print(format_result(result))
    if args.csv:
        print(f"wrote {write_predictions_csv(results, args.csv)}")
    failed = sum(r.error is not None for r in results)
    if failed:
        print(f"{failed} of {len(results)} posters could not be read", file=sys.stderr)
    return 1 if failed else 0


def _batch_predict(args: argparse.Namespace) -> int:
    from postergenre.batch_predict import batch_predict

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


def run(args: argparse.Namespace) -> int:  # noqa: C901 - a flat dispatch table
    cmd = args.command
    if cmd == "ingest":
        from postergenre.ingest import ingest
        from postergenre.tmdb_ingest import cli_options

        summary = ingest(args.source, args.out, n_posters=args.n_posters, seed=args.seed,
                         width=args.width, height=args.height, tmdb=cli_options(args),
                         local_dir=args.local_dir, labels_csv=args.labels_csv,
                         data_version=args.data_version, remote_url=args.remote_url,
                         endpoint_url=args.endpoint_url, repo=args.repo)
        print(json.dumps(summary, indent=2))
    elif cmd == "validate":
        from postergenre.validate import Limits, validate_dataset

        limits = Limits(**{k: getattr(args, k) for k in Limits.__dataclass_fields__})
        summary = validate_dataset(
            args.data, args.out, max_listed=args.max_listed, limits=limits,
            soft_rules=args.soft_rules, warn_rules=args.warn_rules,
            max_reject_fraction=args.max_reject_fraction, metrics_path=args.metrics,
            docs_path=args.docs)
        print(f"validate: {summary['rows_in']} rows in, {summary['rows_kept']} kept, "
              f"{summary['rows_rejected']} rejected {summary['rejects']}")
    elif cmd == "split":
        from postergenre.split import split_dataset

        split_dataset(args.labels, args.out, args.train_fraction, args.validation_fraction,
                      args.seed)
    elif cmd == "augment":
        from postergenre.augment import augment_and_shard

        augment_and_shard(args.data, args.split, args.out, transforms=args.transforms,
                          max_upsample=args.max_upsample, image_size=args.image_size,
                          shard_size=args.shard_size, max_class_weight=args.max_class_weight,
                          crop_min_scale=args.crop_min_scale, jitter=args.jitter, seed=args.seed)
    elif cmd == "train-scratch":
        from postergenre.train import train_scratch

        train_scratch(args.prepared, args.out, conv1_filters=args.conv1_filters,
                      conv2_filters=args.conv2_filters, dense_units=args.dense_units,
                      input_dropout=args.input_dropout, conv_dropout=args.conv_dropout,
                      dense_dropout=args.dense_dropout, clipnorm=args.clipnorm,
                      **_training_kwargs(args))
    elif cmd == "train-vgg16":
        from postergenre.train import train_vgg16

        train_vgg16(args.prepared, args.out, weights=args.weights, backbone=args.backbone,
                    dense_units=args.dense_units, fine_tune_epochs=args.fine_tune_epochs,
                    fine_tune_learning_rate=args.fine_tune_learning_rate,
                    **_training_kwargs(args))
    elif cmd == "evaluate":
        from postergenre.evaluate import evaluate_models

        evaluate_models(args.prepared, _model_pairs(args.model), args.metrics,
                        args.per_genre, args.plots, args.batch_size,
                        bootstrap_path=args.bootstrap, thresholds_path=args.thresholds,
                        report_path=args.report, registry=args.registry,
                        resamples=args.resamples, confidence=args.confidence, seed=args.seed,
                        report_posters=args.report_posters)
    elif cmd == "gate":
        from postergenre.gate import gate

        decision = gate(args.metrics, args.blessing, args.min_f1_micro_margin,
                        args.min_map_margin, args.max_hamming_loss_increase,
                        min_f1_micro=args.min_f1_micro, min_map_macro=args.min_map_macro,
                        epsilon=args.epsilon, genre_ap_floors=args.genre_ap_floors,
                        max_genre_ap_drop=args.max_genre_ap_drop,
                        per_genre_path=args.per_genre, bootstrap_path=args.bootstrap,
                        thresholds_path=args.thresholds)
        print(f"gate: {decision}")
    elif cmd == "register":
        from postergenre.registry import data_version_of, register

        version = args.data_version or data_version_of(args.data_dvc)
        entry = register(args.blessing, _model_pairs(args.model), args.registry, version)
        print(f"registered {entry}" if entry else "not blessed: nothing registered")
    elif cmd == "predict":
        return _predict(args)
    elif cmd == "batch-predict":
        return _batch_predict(args)
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
    if not args.verbose:
        # tfx-bsl logs every feature of the schema through absl at INFO on each read.
        logging.getLogger("absl").setLevel(logging.WARNING)
    try:
        return run(args)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as err:
        # Bad input: one clear line naming the file / row / field, no traceback.
        print(f"postergenre {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
