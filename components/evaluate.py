"""Kubeflow wrapper of `postergenre.evaluation.evaluate.evaluate_models`.

Every trained model arrives in one collection (the pipeline's training fan-out), each
named by its `name` metadata. Headline and per-genre metrics go to a `Metrics` artifact
(the UI's scalar table, as `model.metric` and `model.genre.metric`), the report to an
`HTML` artifact, and the JSON files DVC keeps (metrics, per-genre, bootstrap,
thresholds, curves) to a plain artifact the gate reads; each model's ROC becomes a
`ClassificationMetrics` artifact of its own in a `roc` task per model (components/roc.py).
"""


from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output


def evaluate(prepared: Input[Dataset], models: Input[list[Model]], metrics: Output[Metrics],
             report: Output[HTML], evaluation: Output[Artifact], config: dict,
             registry: str = "", data_version: str = ""):
    """Score every model, three baselines and the registry's last blessed model on test
    (thresholds chosen on validation), with paired bootstrap intervals. `config` is
    params.yaml's `evaluate` section."""
    import json
    import os
    import shutil

    from postergenre.configs import EvaluateConfig
    from postergenre.evaluation.evaluate import evaluate_models
    from postergenre.evaluation.layout import PER_GENRE_FILE, REPORT_FILE
    from postergenre.lineage import stamp, task_lineage
    from postergenre.typed_config import from_mapping

    settings = from_mapping(EvaluateConfig, config, "evaluate")
    model_dirs = {m.metadata["name"]: m.path for m in models}
    out = evaluation.path
    # The report says what the data was (augment recorded it) and its version.
    headline = evaluate_models(prepared.path, model_dirs, out, settings,
                               registry=registry or None, data_version=data_version or None,
                               data_source=prepared.metadata.get("data_source") or None)
    # The page as its own HTML artifact, which the UI renders.
    shutil.copyfile(os.path.join(out, REPORT_FILE), report.path)
    for model_name, values in headline.items():
        for key, value in values.items():
            if value is not None:
                metrics.log_metric(f"{model_name}.{key}", float(value))
    with open(os.path.join(out, PER_GENRE_FILE)) as handle:
        per_genre = json.load(handle)
    for model_name in model_dirs:
        for genre, row in per_genre[model_name].items():
            for key in ("ap", "auc", "f1"):
                if row[key] is not None:
                    metrics.log_metric(f"{model_name}.{genre}.{key}", float(row[key]))
    stamp(task_lineage(data_version, {"evaluate": settings}), metrics, report, evaluation)
