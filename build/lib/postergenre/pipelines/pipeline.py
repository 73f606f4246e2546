"""The pipeline factory: every stage chained, every knob an argument (as TFX's
`create_pipeline()`), nothing run at import.

Compile-time settings (the image, the GPU request) are arguments of `create_pipeline`;
run-time knobs are parameters of the pipeline function it returns, with the defaults a
full-size run uses. Stages pass typed artifacts (Dataset, Model, Metrics,
ClassificationMetrics), so the Kubeflow UI shows each run's lineage.
"""

# No `from __future__ import annotations` here: kfp reads the pipeline function's
# annotations as real types.
from collections.abc import Callable

from kfp import dsl

from postergenre.components import DEFAULT_IMAGE, build_components

PIPELINE_NAME = "postergenre"
GPU_RESOURCE = "nvidia.com/gpu"
STUDY_MINORITY_GENRES = ["Animation", "History", "Music", "Musical", "Sci-Fi", "War", "Western"]


def create_pipeline(image: str = DEFAULT_IMAGE, gpu_count: int = 1,
                    gpu_type: str = GPU_RESOURCE) -> Callable:
    """Build the Kubeflow pipeline function for components running in `image`.

    The two training tasks request `gpu_count` accelerators of `gpu_type`; no other task
    asks for one. (The request only sets the resource limit; picking a GPU node pool is
    the cluster side's job.)
    """
    ops = build_components(image)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Movie genres from posters: ingest, validate, split, "
                  "augment, train two CNNs, evaluate against the null model, gate, register.")
    def postergenre_pipeline(
        source: str = "demo",
        n_posters: int = 1500,
        data_seed: int = 0,
        poster_width: int = 96,
        poster_height: int = 144,
        train_fraction: float = 0.6,
        validation_fraction: float = 0.2,
        split_seed: int = 42,
        minority_genres: list = STUDY_MINORITY_GENRES,
        image_size: int = 128,
        shard_size: int = 1000,
        max_class_weight: float = 10.0,
        scratch_conv1_filters: int = 64,
        scratch_conv2_filters: int = 128,
        scratch_dense_units: int = 256,
        scratch_epochs: int = 100,
        scratch_learning_rate: float = 0.1,
        vgg16_weights: str = "imagenet",
        vgg16_dense_units: int = 4096,
        vgg16_epochs: int = 50,
        vgg16_learning_rate: float = 0.01,
        batch_size: int = 32,
        momentum: float = 0.9,
        lr_patience: int = 15,
        stop_patience: int = 20,
        train_seed: int = 0,
        min_f1_micro_margin: float = 0.05,
        min_map_margin: float = 0.05,
        max_hamming_loss_increase: float = 0.0,
        registry: str = "registry",
    ) -> str:
        ingest = ops.ingest(source=source, n_posters=n_posters, seed=data_seed,
                            width=poster_width, height=poster_height)
        validate = ops.validate(dataset=ingest.outputs["dataset"])
        split = ops.split(validated=validate.outputs["validated"],
                          train_fraction=train_fraction,
                          validation_fraction=validation_fraction, seed=split_seed)
        augment = ops.augment(dataset=ingest.outputs["dataset"],
                              splits=split.outputs["splits"], minority_genres=minority_genres,
                              image_size=image_size, shard_size=shard_size,
                              max_class_weight=max_class_weight)
        prepared = augment.outputs["prepared"]
        scratch = ops.train_scratch(
            prepared=prepared, conv1_filters=scratch_conv1_filters,
            conv2_filters=scratch_conv2_filters, dense_units=scratch_dense_units,
            epochs=scratch_epochs, batch_size=batch_size, learning_rate=scratch_learning_rate,
            momentum=momentum, lr_patience=lr_patience, stop_patience=stop_patience,
            seed=train_seed)
        vgg16 = ops.train_vgg16(
            prepared=prepared, weights=vgg16_weights, dense_units=vgg16_dense_units,
            epochs=vgg16_epochs, batch_size=batch_size, learning_rate=vgg16_learning_rate,
            momentum=momentum, lr_patience=lr_patience, stop_patience=stop_patience,
            seed=train_seed)
        for task, label in ((scratch, "train CNN from scratch"), (vgg16, "train VGG16 head")):
            task.set_display_name(f"{label} (GPU)")
            task.set_accelerator_type(gpu_type).set_accelerator_limit(gpu_count)
        evaluate = ops.evaluate(prepared=prepared, scratch_model=scratch.outputs["model"],
                                vgg16_model=vgg16.outputs["model"])
        gate = ops.gate(evaluation=evaluate.outputs["evaluation"],
                        min_f1_micro_margin=min_f1_micro_margin, min_map_margin=min_map_margin,
                        max_hamming_loss_increase=max_hamming_loss_increase)
        with dsl.If(gate.outputs["Output"] == "blessed", name="blessed"):
            ops.register(blessing=gate.outputs["blessing"],
                         scratch_model=scratch.outputs["model"],
                         vgg16_model=vgg16.outputs["model"], registry=registry)
        return gate.outputs["Output"]

    return postergenre_pipeline
