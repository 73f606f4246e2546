"""Kubeflow wrapper of `postergenre.evaluate.evaluate_models`.

Headline and per-genre metrics go to a `Metrics` artifact (the UI's scalar table, as
`model.metric` and `model.genre.metric`), each model's micro-averaged ROC to a
`ClassificationMetrics` artifact, the report to an `HTML` artifact, and the JSON files
DVC keeps (metrics, per-genre, bootstrap, thresholds, curves) to a plain artifact the
gate reads.
"""

from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def evaluate(prepared: Input[Dataset], scratch_model: Input[Model], vgg16_model: Input[Model],
             metrics: Output[Metrics], scratch_roc: Output[ClassificationMetrics],
             vgg16_roc: Output[ClassificationMetrics], report: Output[HTML],
             evaluation: Output[Artifact], registry: str = "", resamples: int = 200,
             confidence: float = 0.95, report_posters: int = 12):
    """Score both models, three baselines and the registry's last blessed model on test
    (thresholds chosen on validation), with paired bootstrap intervals."""
    import json
    import os

    from postergenre.evaluate import evaluate_models

    out = evaluation.path
    plots = os.path.join(out, "plots")
    headline = evaluate_models(
        prepared.path, {"scratch": scratch_model.path, "vgg16": vgg16_model.path},
        os.path.join(out, "metrics.json"), os.path.join(out, "per_genre.json"), plots,
        bootstrap_path=os.path.join(out, "bootstrap.json"),
        thresholds_path=os.path.join(out, "thresholds.json"), report_path=report.path,
        registry=registry or None, resamples=resamples, confidence=confidence,
        report_posters=report_posters)
    for model_name, values in headline.items():
        for key, value in values.items():
            if value is not None:
                metrics.log_metric(f"{model_name}.{key}", float(value))
    with open(os.path.join(out, "per_genre.json")) as handle:
        per_genre = json.load(handle)
    for model_name in ("scratch", "vgg16"):
        for genre, row in per_genre[model_name].items():
            for key in ("ap", "auc", "f1"):
                if row[key] is not None:
                    metrics.log_metric(f"{model_name}.{genre}.{key}", float(row[key]))
    for model_name, roc in (("scratch", scratch_roc), ("vgg16", vgg16_roc)):
        with open(os.path.join(plots, f"roc_{model_name}.json")) as handle:
            points = json.load(handle)
        roc.log_roc_curve([p["fpr"] for p in points], [p["tpr"] for p in points],
                          [p["threshold"] for p in points])
