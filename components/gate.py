"""Kubeflow wrapper of `postergenre.evaluation.gate.gate`: a string for `dsl.If`, the blessing, the
blessed model itself, the report and a short Markdown decision card (the decision, the
model, its metrics beside the baselines': `report.decision_markdown`).

The gate hands the blessed model on as its own artifact because KFP cannot consume a
`dsl.Collected` fan-in inside a `dsl.If` branch (the compiler fails on it, kfp 2.17): the
branch's register task takes this one model instead of the whole collection.
"""

from kfp.dsl import HTML, Artifact, Input, Markdown, Model, Output


def gate(evaluation: Input[Artifact], models: Input[list[Model]], decision_card: Output[Markdown],
         blessing: Output[Artifact], report: Output[HTML], blessed_model: Output[Model],
         config: dict, data_version: str = "") -> str:
    """Return `blessed` or `rejected`; `decision_card` says it in a few lines of Markdown,
    the blessing artifact records every rule, its value, threshold and baseline, and
    `report` is evaluate's page opening with the decision.
    `config` is params.yaml's `gate` section. When a model is blessed, `blessed_model` is a
    copy of it (else an empty folder) with its metadata, so its lineage is the training
    task's."""
    import json
    import os
    import shutil
    import tempfile

    from postergenre.configs import GateConfig
    from postergenre.evaluation.gate import gate as run
    from postergenre.evaluation.layout import BLESSING_FILE, DECIDED_REPORT_FILE, METRICS_FILE
    from postergenre.evaluation.report import decision_markdown
    from postergenre.lineage import stamp, task_lineage
    from postergenre.typed_config import from_mapping

    settings = from_mapping(GateConfig, config, "gate")
    lineage = task_lineage(data_version, {"gate": settings})
    with tempfile.TemporaryDirectory() as decided:
        decision = run(evaluation.path, decided, settings)
        # Two artifacts of their own: the blessing register reads, the page the UI renders.
        shutil.copyfile(os.path.join(decided, BLESSING_FILE), blessing.path)
        shutil.copyfile(os.path.join(decided, DECIDED_REPORT_FILE), report.path)
    with open(blessing.path) as handle:
        content = json.load(handle)
    blessing.metadata.update({"decision": decision, "model": content["model"] or "",
                              "failed_rules": content["failed_rules"],
                              "compared_with": content["compared_with"] or ""})
    with open(os.path.join(evaluation.path, METRICS_FILE)) as handle:
        scored = json.load(handle)
    with open(decision_card.path, "w", encoding="utf-8") as handle:
        handle.write(decision_markdown(content, scored))
    decision_card.metadata.update({"decision": decision, "model": content["model"] or "",
                                   "display_name": "decision card"})
    stamp(lineage, blessing, report, decision_card)
    chosen = {m.metadata["name"]: m for m in models}.get(content["model"] or "")
    if chosen is not None:
        shutil.copytree(chosen.path, blessed_model.path)
        # Its own label in the UI, not the copied `display_name` of the training's output.
        blessed_model.metadata.update({**chosen.metadata, "decision": decision,
                                       "display_name": f"{content['model']} (blessed)"})
    else:
        os.makedirs(blessed_model.path, exist_ok=True)
        blessed_model.metadata["decision"] = decision
        stamp(lineage, blessed_model)  # no model: the gate's own lineage
    # The run's answer in its log: the decision and every rule that failed.
    print(f"gate: {decision}" + (f" {content['model']}" if content["model"] else ""))
    for line in content["failed_rules"]:
        print(f"  failed: {line}")
    return decision
