"""Kubeflow wrapper of `postergenre.augment.augment_and_shard`."""

from kfp.dsl import Artifact, Dataset, Input, Output


def augment(dataset: Input[Dataset], splits: Input[Dataset], prepared: Output[Dataset],
            class_weights: Output[Artifact], transforms: list = None, max_upsample: float = 3.0,
            image_size: int = 64, shard_size: int = 1000, max_class_weight: float = 10.0,
            seed: int = 0):
    """Shard every split; upsample rare genres in training only; write the class weights."""
    import shutil

    from postergenre.augment import CLASS_WEIGHTS_FILE, TRANSFORMS, augment_and_shard

    manifest = augment_and_shard(dataset.path, splits.path, prepared.path,
                                 transforms=TRANSFORMS if transforms is None else transforms,
                                 max_upsample=max_upsample, image_size=image_size,
                                 shard_size=shard_size, max_class_weight=max_class_weight,
                                 seed=seed)
    shutil.copyfile(f"{prepared.path}/{CLASS_WEIGHTS_FILE}", class_weights.path)
    class_weights.metadata.update({"genres": manifest["genres"],
                                   "class_weights": manifest["class_weights"]})
    prepared.metadata.update({"image_size": image_size, "counts": manifest["counts"]})
