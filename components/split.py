"""Kubeflow wrapper of `postergenre.data.split.split_dataset`."""

from kfp.dsl import Dataset, Input, Output


def split(validated: Input[Dataset], splits: Output[Dataset], config: dict,
          data_version: str = ""):
    """Split the validated labels by movie (stratified, near-duplicates kept together);
    `config` is params.yaml's `split` section."""
    import os

    from postergenre.configs import SplitConfig
    from postergenre.data.split import split_dataset
    from postergenre.lineage import stamp, task_lineage
    from postergenre.typed_config import from_mapping

    settings = from_mapping(SplitConfig, config, "split")
    manifest = split_dataset(os.path.join(validated.path, "labels.csv"), splits.path, settings)
    splits.metadata.update({"counts": manifest["counts"], "sha256": manifest["sha256"],
                            "content_hash": manifest["content_hash"], "seed": settings.seed})
    stamp(task_lineage(data_version, {"split": settings}), splits)
