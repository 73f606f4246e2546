"""Kubeflow wrapper of `postergenre.data.augment.augment_and_shard`."""

from kfp.dsl import Artifact, Dataset, Input, Output


def augment(dataset: Input[Dataset], splits: Input[Dataset], prepared: Output[Dataset],
            class_weights: Output[Artifact], config: dict, data_version: str = ""):
    """Shard every split; upsample rare genres in training only; write the class weights.
    `config` is params.yaml's `augment` section."""
    import shutil

    from postergenre.configs import AugmentConfig
    from postergenre.data.augment import CLASS_WEIGHTS_FILE, augment_and_shard
    from postergenre.lineage import stamp, task_lineage
    from postergenre.typed_config import from_mapping

    settings = from_mapping(AugmentConfig, config, "augment")
    manifest = augment_and_shard(dataset.path, splits.path, prepared.path, settings)
    shutil.copyfile(f"{prepared.path}/{CLASS_WEIGHTS_FILE}", class_weights.path)
    class_weights.metadata.update({"genres": manifest["genres"],
                                   "class_weights": manifest["class_weights"]})
    # What the posters are (demo or real): evaluate's report says it.
    from postergenre.serving.registry import labels_source

    prepared.metadata.update({"image_size": settings.image_size, "counts": manifest["counts"],
                              "data_source": labels_source(f"{dataset.path}/labels.csv")
                              or ""})
    stamp(task_lineage(data_version, {"augment": settings}), prepared, class_weights)
