"""Kubeflow: one model's micro-averaged test ROC as a `ClassificationMetrics` artifact of its
own.

The UI draws one curve per ClassificationMetrics artifact, and a component has a fixed
set of outputs: evaluate cannot emit one per model. So the pipeline runs this small task
once per model (a ParallelFor over the model names, as training does), each reading
evaluate's curve file (`plots/roc.json`, the same points DVC plots), and the UI's
Compare view lays the models' curves over each other.
"""

from kfp.dsl import Artifact, ClassificationMetrics, Input, Output


def roc(evaluation: Input[Artifact], name: str, curve: Output[ClassificationMetrics],
        data_version: str = ""):
    """`name`'s ROC from evaluate's output folder, labelled with the model's name."""
    import json
    import os

    from postergenre.evaluation.evaluate import ROC_FILE
    from postergenre.evaluation.layout import PLOTS_DIR
    from postergenre.lineage import stamp, task_lineage

    with open(os.path.join(evaluation.path, PLOTS_DIR, ROC_FILE)) as handle:
        points = [p for p in json.load(handle) if p["model"] == name]
    if not points:
        raise ValueError(f"{name}: evaluate's {ROC_FILE} holds no curve of this model")
    curve.log_roc_curve([p["fpr"] for p in points], [p["tpr"] for p in points],
                        [p["threshold"] for p in points])
    curve.metadata.update({"model": name, "display_name": f"{name} ROC (test, micro)"})
    stamp(task_lineage(data_version, {}), curve)
