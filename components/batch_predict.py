"""Kubeflow wrapper of `postergenre.serving.batch_predict.batch_predict` (runs only inside `dsl.If`,
after register): the registered model scores the prepared test shards on Apache Beam."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def batch_predict(model: Input[Model], prepared: Input[Dataset], blessing: Input[Artifact],
                  predictions: Output[Dataset], split: str = "test",
                  runner: str = "DirectRunner", beam_options: str = "",
                  data_version: str = ""):
    """Write `predictions-*.parquet` (imdb_id, 19 probabilities, genres), errors.csv and
    summary.json; genres use the blessing's per-genre thresholds (else 0.5).
    `beam_options`: extra Beam pipeline options, space-separated (e.g. Dataflow's
    '--project=p --region=r --temp_location=gs://b/tmp')."""
    import json
    import shlex

    from postergenre.lineage import stamp, task_lineage
    from postergenre.serving.batch_predict import batch_predict as run

    with open(blessing.path) as handle:
        thresholds = blessing.path if json.load(handle).get("thresholds") else None
    summary = run(model.path, predictions.path, prepared_dir=prepared.path, split=split,
                  thresholds_path=thresholds, runner=runner,
                  beam_args=shlex.split(beam_options))
    predictions.metadata.update({k: summary[k] for k in ("rows", "errors", "thresholds",
                                                         "runner")})
    # Its settings are its own parameters (no params.yaml section).
    stamp(task_lineage(data_version, {"batch_predict": {
        "split": split, "runner": runner, "beam_options": beam_options}}), predictions)
    if summary["errors"]:
        print(f"batch_predict: {summary['errors']} records could not be scored "
              "(errors.csv in the predictions artifact)")
