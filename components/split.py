"""Kubeflow wrapper of `postergenre.split.split_dataset`."""

from kfp.dsl import Dataset, Input, Output


def split(validated: Input[Dataset], splits: Output[Dataset], train_fraction: float = 0.6,
          validation_fraction: float = 0.2, seed: int = 42):
    """Split the validated labels by movie (stratified, near-duplicates kept together)."""
    import os

    from postergenre.split import split_dataset

    manifest = split_dataset(os.path.join(validated.path, "labels.csv"), splits.path,
                             train_fraction, validation_fraction, seed)
    splits.metadata.update({"counts": manifest["counts"], "sha256": manifest["sha256"],
                            "content_hash": manifest["content_hash"], "seed": seed})
