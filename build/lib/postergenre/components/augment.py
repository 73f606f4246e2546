"""Kubeflow wrapper of `postergenre.augment.augment_and_shard`."""

from kfp.dsl import Dataset, Input, Output


def augment(dataset: Input[Dataset], splits: Input[Dataset], prepared: Output[Dataset],
            minority_genres: list, image_size: int = 64, shard_size: int = 1000,
            max_class_weight: float = 10.0):
    """Shard every split; add flipped minority-genre posters to training only."""
    from postergenre.augment import augment_and_shard

    manifest = augment_and_shard(dataset.path, splits.path, prepared.path, minority_genres,
                                 image_size, shard_size, max_class_weight=max_class_weight)
    prepared.metadata.update({"image_size": image_size, "counts": manifest["counts"]})
