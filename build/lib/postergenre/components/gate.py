"""Kubeflow wrapper of `postergenre.gate.gate`: a string for `dsl.If`, and the blessing."""

from kfp.dsl import Artifact, Input, Output


def gate(evaluation: Input[Artifact], blessing: Output[Artifact],
         min_f1_micro_margin: float = 0.05, min_map_margin: float = 0.05,
         max_hamming_loss_increase: float = 0.0) -> str:
    """Return `blessed` or `rejected`; the blessing artifact records every rule."""
    import json
    import os

    from postergenre.gate import gate as run

    decision = run(os.path.join(evaluation.path, "metrics.json"), blessing.path,
                   min_f1_micro_margin, min_map_margin, max_hamming_loss_increase)
    with open(blessing.path) as handle:
        content = json.load(handle)
    blessing.metadata.update({"decision": decision, "model": content["model"] or "",
                              "failed_rules": content["failed_rules"]})
    return decision
