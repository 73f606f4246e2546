"""Kubeflow wrapper of `postergenre.validate.validate_dataset`."""

from kfp.dsl import HTML, Dataset, Input, Metrics, Output


def validate(dataset: Input[Dataset], validated: Output[Dataset], data_docs: Output[HTML],
             metrics: Output[Metrics], max_listed: int = 10, soft_rules: list = None,
             warn_rules: list = None, max_reject_fraction: float = 0.05,
             min_genre_support: int = 1, min_width: int = 32, min_height: int = 32,
             min_aspect: float = 1.0, max_aspect: float = 2.0, max_pixels: int = 40_000_000,
             duplicate_distance: int = 4):
    """Run the great-expectations suite; fail the task (naming the rows) on a hard rule.

    The Data Docs page is an HTML artifact (the Kubeflow UI renders it); rows in / kept /
    rejected by reason are logged as metrics.
    """
    from postergenre.validate import Limits, validate_dataset

    limits = Limits(min_genre_support=min_genre_support, min_width=min_width,
                    min_height=min_height, min_aspect=min_aspect, max_aspect=max_aspect,
                    max_pixels=max_pixels, duplicate_distance=duplicate_distance)
    summary = validate_dataset(dataset.path, validated.path, max_listed=max_listed,
                               limits=limits, soft_rules=soft_rules, warn_rules=warn_rules,
                               max_reject_fraction=max_reject_fraction,
                               docs_path=data_docs.path)
    for key in ("rows_in", "rows_kept", "rows_rejected"):
        metrics.log_metric(key, summary[key])
    for reason, count in summary["rejects"].items():
        metrics.log_metric(f"rejected_{reason}", count)
    validated.metadata.update({"rows_in": summary["rows_in"], "rows_kept": summary["rows_kept"],
                               "rejects": summary["rejects"]})
