"""Kubeflow wrapper of `postergenre.evaluate.evaluate_models`.

Headline metrics go to a `Metrics` artifact (the UI's scalar table, as `model.metric`),
each model's micro-averaged ROC to a `ClassificationMetrics` artifact, and the JSON
files DVC keeps to a plain artifact the gate reads.
"""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def evaluate(prepared: Input[Dataset], scratch_model: Input[Model], vgg16_model: Input[Model],
             metrics: Output[Metrics], scratch_roc: Output[ClassificationMetrics],
             vgg16_roc: Output[ClassificationMetrics], evaluation: Output[Artifact]):
    """Score both models and the null model on test, thresholds chosen on validation."""
    import json
    import os

    from postergenre.evaluate import evaluate_models

    plots = os.path.join(evaluation.path, "plots")
    headline = evaluate_models(
        prepared.path, {"scratch": scratch_model.path, "vgg16": vgg16_model.path},
        os.path.join(evaluation.path, "metrics.json"),
        os.path.join(evaluation.path, "per_genre.json"), plots)
    for model_name, values in headline.items():
        for key, value in values.items():
            if value is not None:
                metrics.log_metric(f"{model_name}.{key}", float(value))
    for model_name, roc in (("scratch", scratch_roc), ("vgg16", vgg16_roc)):
        with open(os.path.join(plots, f"roc_{model_name}.json")) as handle:
            points = json.load(handle)
        roc.log_roc_curve([p["fpr"] for p in points], [p["tpr"] for p in points],
                          [p["threshold"] for p in points])
