"""Kubeflow wrapper of `postergenre.validation.validate.validate_dataset`."""

from kfp.dsl import HTML, Dataset, Input, Metrics, Output


def validate(dataset: Input[Dataset], validated: Output[Dataset], data_docs: Output[HTML],
             metrics: Output[Metrics], config: dict, data_version: str = ""):
    """Run the great-expectations suite; fail the task (naming the rows) on a hard rule.

    `config` is params.yaml's `validate` section. The Data Docs page is an HTML artifact
    (the Kubeflow UI renders it); rows in / kept / rejected by reason are logged as metrics.
    Every output carries the lineage (`postergenre.lineage`) of `data_version`.
    """
    from postergenre.configs import ValidateConfig
    from postergenre.lineage import stamp, task_lineage
    from postergenre.typed_config import from_mapping
    from postergenre.validation.validate import validate_dataset

    settings = from_mapping(ValidateConfig, config, "validate")
    summary = validate_dataset(dataset.path, validated.path, settings,
                               docs_path=data_docs.path)
    for key in ("rows_in", "rows_kept", "rows_rejected"):
        metrics.log_metric(key, summary[key])
    for reason, count in summary["rejects"].items():
        metrics.log_metric(f"rejected_{reason}", count)
    validated.metadata.update({"rows_in": summary["rows_in"], "rows_kept": summary["rows_kept"],
                               "rejects": summary["rejects"]})
    stamp(task_lineage(data_version, {"validate": settings}), validated, data_docs, metrics)
