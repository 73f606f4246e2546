"""Kubeflow wrapper of `postergenre.gate.gate`: a string for `dsl.If`, and the blessing."""

from kfp.dsl import Artifact, Input, Output


def gate(evaluation: Input[Artifact], blessing: Output[Artifact],
         min_f1_micro_margin: float = 0.05, min_map_margin: float = 0.05,
         max_hamming_loss_increase: float = 0.0, min_f1_micro: float = 0.0,
         min_map_macro: float = 0.0, epsilon: float = 0.02, genre_ap_floors: str = "",
         max_genre_ap_drop: float = -1.0) -> str:
    """Return `blessed` or `rejected`; the blessing artifact records every rule, its value,
    threshold and baseline. `genre_ap_floors`: 'Drama=0.3,Comedy=0.2' ('' for none)."""
    import json
    import os

    from postergenre.cli import _genre_floats
    from postergenre.gate import gate as run

    def path(name: str) -> str:
        return os.path.join(evaluation.path, name)

    decision = run(path("metrics.json"), blessing.path, min_f1_micro_margin, min_map_margin,
                   max_hamming_loss_increase, min_f1_micro=min_f1_micro,
                   min_map_macro=min_map_macro, epsilon=epsilon,
                   genre_ap_floors=_genre_floats(genre_ap_floors),
                   max_genre_ap_drop=max_genre_ap_drop, per_genre_path=path("per_genre.json"),
                   bootstrap_path=path("bootstrap.json"),
                   thresholds_path=path("thresholds.json"))
    with open(blessing.path) as handle:
        content = json.load(handle)
    blessing.metadata.update({"decision": decision, "model": content["model"] or "",
                              "failed_rules": content["failed_rules"],
                              "compared_with": content["compared_with"] or ""})
    return decision
