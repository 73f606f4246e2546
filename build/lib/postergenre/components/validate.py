"""Kubeflow wrapper of `postergenre.validate.validate_dataset`."""

from kfp.dsl import Dataset, Input, Output


def validate(dataset: Input[Dataset], validated: Output[Dataset], max_listed: int = 10):
    """Run the great-expectations suite; fail the task (naming the rows) on a hard rule."""
    from postergenre.validate import validate_dataset

    summary = validate_dataset(dataset.path, validated.path, max_listed=max_listed)
    validated.metadata.update({"rows_in": summary["rows_in"], "rows_kept": summary["rows_kept"]})
