"""`batch_predict`: score a whole catalogue of poster shards on Apache Beam.

The shards' serialized `tf.train.Example`s go, keyed by movie id, through tfx-bsl's
`RunInference` into the model's SavedModel (`serve_examples` endpoint: parse `image`,
decode and resize exactly as `serving_default`), and come out as a Parquet table: one row
per poster with `imdb_id`, one float column per genre (GENRES order) and `genres`, the
list of genres whose probability reaches its threshold. The same pipeline runs on the
DirectRunner here and on Dataflow, Flink or Spark by standard Beam pipeline options
(`--runner`, `--project`, `--flink_master`, ...), passed through untouched.

Thresholds: the per-genre thresholds evaluate chose on validation, stored with the model
in its registry entry (`thresholds.json`, required there), or given explicitly; else, for
a bare trained model, 0.5 for every genre (logged, and recorded in the summary). A registry
entry is verified against the hashes it was registered with before it is used. A record
that cannot be parsed or whose poster cannot be decoded is written to `errors.csv` (file,
movie id, reason) and the others are scored, as `predict` does with a bad file.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from postergenre.atomic import write_json
from postergenre.genres import GENRES

log = logging.getLogger(__name__)
SIGNATURE = "serve_examples"  # the endpoint training.outputs.export_serving adds for RunInference
OUTPUT_KEY = "probabilities"
PREDICTIONS_PREFIX = "predictions"
ERRORS_FILE = "errors.csv"
SUMMARY_FILE = "summary.json"
DEFAULT_THRESHOLD = 0.5


def resolve_model(model: str | os.PathLike[str],
                  cache_dir: str | os.PathLike[str] | None = None) -> tuple[Path, Path | None]:
    """(trained model folder, registry entry holding it or None) for a registry (folder with
    `latest.json`, or s3://), a registry entry, or a trained model folder.

    A registry entry (the latest, or one given) is verified against the sha256 hashes it
    was registered with (registry.verify_entry): a swapped model file is refused.
    """
    from postergenre.serving.predict import no_blessed_model
    from postergenre.serving.registry import (
        LATEST_FILE,
        MODEL_FOLDER,
        entry_of,
        fetch_latest,
        is_remote,
        verify_entry,
    )

    if is_remote(model) or (Path(model) / LATEST_FILE).is_file():
        entry = fetch_latest(str(model), cache_dir)  # verified
        if entry is None:
            raise no_blessed_model(model)
        return entry / MODEL_FOLDER, entry
    folder = Path(model)
    entry = entry_of(folder)
    if entry is not None:  # an entry, or an entry's model/ folder
        verify_entry(entry)
        return entry / MODEL_FOLDER, entry
    if (folder / MODEL_FOLDER).is_dir():
        return folder / MODEL_FOLDER, None
    if (folder / "saved_model").is_dir() or (folder / "model.keras").is_file():
        return folder, None
    raise FileNotFoundError(f"{model}: neither a registry (latest.json), a registry entry "
                            "(model/) nor a trained model folder (saved_model/)")


def load_thresholds(entry: Path | None, thresholds_path: str | os.PathLike[str] | None = None,
                    ) -> tuple[np.ndarray, str]:
    """Per-genre thresholds (GENRES order) and where they came from.

    `thresholds_path` (a thresholds.json, or a gate blessing.json holding `thresholds`)
    wins; else the registry entry's thresholds.json, which an entry must hold (an entry
    served with 0.5 would not be the model that was blessed); else, for a bare trained
    model, 0.5 for every genre.
    """
    from postergenre.serving.registry import THRESHOLDS_FILE, require_thresholds

    saved, source = None, f"default {DEFAULT_THRESHOLD}"
    if thresholds_path:
        content = json.loads(Path(thresholds_path).read_text())
        saved = content.get("thresholds", content) if "per_genre" not in content else content
        source = str(thresholds_path)
    elif entry is not None:
        saved = require_thresholds(entry)
        source = str(entry / THRESHOLDS_FILE)
    if not saved or not saved.get("per_genre"):
        if thresholds_path:
            raise ValueError(f"{thresholds_path}: no per_genre thresholds")
        log.warning("batch_predict: no stored thresholds; using %.1f for every genre",
                    DEFAULT_THRESHOLD)
        return np.full(len(GENRES), DEFAULT_THRESHOLD), f"default {DEFAULT_THRESHOLD}"
    missing = [g for g in GENRES if g not in saved["per_genre"]]
    if missing:
        raise ValueError(f"{source}: per_genre thresholds lack {missing}")
    return np.array([float(saved["per_genre"][g]) for g in GENRES]), source


def saved_model_for(model_dir: Path, work_dir: Path) -> Path:
    """The model's SavedModel with the `serve_examples` endpoint; a model trained before
    the endpoint existed is re-exported from its model.keras (same weights) into work_dir."""
    from tensorflow.python.saved_model import loader_impl

    saved = model_dir / "saved_model"
    if saved.is_dir():
        graphs = loader_impl.parse_saved_model(str(saved)).meta_graphs
        if any(SIGNATURE in graph.signature_def for graph in graphs):
            return saved
    from postergenre.training.outputs import export_serving, load_model

    model = load_model(model_dir)
    log.info("batch_predict: %s lacks %r; re-exporting from model.keras", saved, SIGNATURE)
    return export_serving(model, work_dir / "saved_model", int(model.input_shape[1]))


def input_files(prepared_dir: str | os.PathLike[str] | None = None, split: str = "test",
                shards: str | None = None) -> list[str]:
    """A prepared folder's shards of `split`, or the files a glob matches (sorted)."""
    from postergenre.data.shards import shard_paths

    if shards:
        files = sorted(glob.glob(shards))
        if not files:
            raise FileNotFoundError(f"no TFRecord files match {shards!r}")
        return files
    if prepared_dir is None:
        raise ValueError("batch_predict needs a prepared folder or a glob of shards")
    files = shard_paths(prepared_dir, split)
    if not files:
        raise ValueError(f"{prepared_dir}: split {split!r} has no shards")
    return files


def _check_record(item: tuple[str, bytes]) -> Iterator:
    """(imdb_id, serialized example), or an error row (tagged 'errors') naming the file."""
    import apache_beam as beam
    import tensorflow as tf

    from postergenre.data.images import decode_rgb

    filename, record = item
    try:
        example = tf.train.Example.FromString(record)
    except Exception as err:  # noqa: BLE001 - any parse failure is a bad record
        yield beam.pvalue.TaggedOutput("errors", (filename, "", f"not a tf.Example ({err})"))
        return
    feature = example.features.feature
    ids = feature["imdb_id"].bytes_list.value if "imdb_id" in feature else []
    imdb_id = ids[0].decode("utf-8", "replace") if ids else ""
    images = feature["image"].bytes_list.value if "image" in feature else []
    if not imdb_id or len(images) != 1:
        yield beam.pvalue.TaggedOutput(
            "errors", (filename, imdb_id, "missing imdb_id or image feature"))
        return
    try:
        decode_rgb(images[0], source=imdb_id)  # the graph would fail the whole batch
    except ValueError as err:
        yield beam.pvalue.TaggedOutput("errors", (filename, imdb_id, str(err)))
        return
    yield imdb_id, record


def _to_row(item: tuple, thresholds: np.ndarray) -> dict:
    import tensorflow as tf

    imdb_id, prediction_log = item
    tensor = prediction_log.predict_log.response.outputs[OUTPUT_KEY]
    probabilities = tf.make_ndarray(tensor).reshape(-1).astype(np.float64)
    if probabilities.shape != (len(GENRES),):
        raise ValueError(f"{imdb_id}: the model returned {probabilities.shape[0]} "
                         f"probabilities, not {len(GENRES)}")
    return {"imdb_id": imdb_id,
            **{g: float(p) for g, p in zip(GENRES, probabilities, strict=True)},
            "genres": [g for g, p, t in zip(GENRES, probabilities, thresholds, strict=True)
                       if p >= t]}


def parquet_schema():
    import pyarrow as pa

    return pa.schema([("imdb_id", pa.string()), *[(g, pa.float32()) for g in GENRES],
                      ("genres", pa.list_(pa.string()))])


def _csv_line(row: tuple[str, str, str]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(row)
    return buffer.getvalue()


def batch_predict(
    model: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    prepared_dir: str | os.PathLike[str] | None = None,
    split: str = "test",
    shards: str | None = None,
    thresholds_path: str | os.PathLike[str] | None = None,
    runner: str = "DirectRunner",
    beam_args: Sequence[str] = (),
    num_shards: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict:
    """Score every poster of the shards with the model; write Parquet under `out_dir`.

    `model`: a registry (folder or s3://: its latest blessed entry), a registry entry or a
    trained model folder. `beam_args`: extra Beam pipeline options (e.g. `--project=...`
    for Dataflow). On a distributed runner `out_dir`, the shards and the model folder must
    be storage the workers can read (gs://, s3://, a shared volume). `num_shards`: output
    files (0: the runner decides). Returns the summary also written to summary.json.
    """
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tfx_bsl.public.beam import run_inference
    from tfx_bsl.public.proto import model_spec_pb2

    files = input_files(prepared_dir, split, shards)
    model_dir, entry = resolve_model(model, cache_dir)
    thresholds, threshold_source = load_thresholds(entry, thresholds_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Beam writes into a staging folder beside the output; only a finished run replaces an
    # earlier run's files, so a failure leaves the previous table whole.
    with (tempfile.TemporaryDirectory(prefix="postergenre-batch-") as work,
          tempfile.TemporaryDirectory(dir=out, prefix=".incoming-") as staging):
        saved_model = saved_model_for(model_dir, Path(work))
        spec = model_spec_pb2.InferenceSpecType(saved_model_spec=model_spec_pb2.SavedModelSpec(
            model_path=str(saved_model), signature_name=[SIGNATURE]))
        options = PipelineOptions([f"--runner={runner}", *beam_args])
        log.info("batch_predict: %d shard file(s), model %s, runner %s", len(files),
                 saved_model, runner)
        with beam.Pipeline(options=options) as pipeline:
            checked = (pipeline
                       | "Files" >> beam.Create(files)
                       | "Read" >> beam.io.ReadAllFromTFRecord(with_filename=True)
                       # Typed: RunInference picks its keyed (imdb_id, log) path and coder.
                       | "Check" >> beam.FlatMap(_check_record)
                       .with_output_types(tuple[str, bytes])
                       .with_outputs("errors", main="good"))
            (checked.good
             | "RunInference" >> run_inference.RunInference(spec)
             | "ToRow" >> beam.Map(_to_row, thresholds=thresholds)
             | "Write" >> beam.io.WriteToParquet(
                 str(Path(staging, PREDICTIONS_PREFIX)), parquet_schema(),
                 file_name_suffix=".parquet", num_shards=num_shards))
            (checked.errors
             | "ErrorLines" >> beam.Map(_csv_line)
             | "WriteErrors" >> beam.io.WriteToText(
                 str(Path(staging, ERRORS_FILE)), shard_name_template="",
                 header="file,imdb_id,error"))
        for previous in [*out.glob(f"{PREDICTIONS_PREFIX}-*.parquet"), out / ERRORS_FILE]:
            previous.unlink(missing_ok=True)
        for produced in Path(staging).iterdir():
            os.replace(produced, out / produced.name)
    summary = _summarise(out, files, str(model_dir), threshold_source, runner)
    write_json(out / SUMMARY_FILE, summary)
    log.info("batch_predict: %d poster(s) scored, %d error(s) -> %s", summary["rows"],
             summary["errors"], out)
    return summary


def _summarise(out: Path, files: list[str], model: str, thresholds: str, runner: str) -> dict:
    """Row and error counts (Parquet footers and errors.csv, read here, not in Beam)."""
    import pyarrow.parquet as pq

    outputs = sorted(out.glob(f"{PREDICTIONS_PREFIX}-*.parquet"))
    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in outputs)
    errors_path = out / ERRORS_FILE
    errors = (max(0, len(errors_path.read_text().splitlines()) - 1)
              if errors_path.is_file() else 0)
    return {"model": model, "thresholds": thresholds, "runner": runner, "inputs": files,
            "outputs": [p.name for p in outputs], "rows": rows, "errors": errors}


def read_predictions(out_dir: str | os.PathLike[str]):
    """The Parquet table batch_predict wrote under `out_dir`, as a pandas DataFrame."""
    import pandas as pd
    import pyarrow.parquet as pq

    paths = sorted(Path(out_dir).glob(f"{PREDICTIONS_PREFIX}-*.parquet"))
    if not paths:
        return pd.DataFrame(columns=parquet_schema().names)
    return pd.concat([pq.read_table(p).to_pandas() for p in paths], ignore_index=True)
