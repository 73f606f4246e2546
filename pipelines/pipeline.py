"""The pipeline factory: every stage chained, every knob an argument (as TFX's
`create_pipeline()`), nothing run at import.

Compile-time settings (images, GPU node pool, resources, Secret names, caching, pipeline
root: `ClusterSettings` in platform.py) are the argument of `create_pipeline`; run-time
knobs are parameters of the pipeline function it returns, with the defaults a full-size
run uses. Stages pass typed artifacts (Dataset, Model, Metrics,
ClassificationMetrics), so the Kubeflow UI shows each run's lineage.
"""

# No `from __future__ import annotations` here: kfp reads the pipeline function's
# annotations as real types.
from collections.abc import Callable

from kfp import dsl

from postergenre.components import build_components
from postergenre.pipelines.platform import GPU_RESOURCE, ClusterSettings, apply_cluster_settings

PIPELINE_NAME = "postergenre"
__all__ = ["GPU_RESOURCE", "PIPELINE_NAME", "ClusterSettings", "create_pipeline"]


def create_pipeline(settings: ClusterSettings | None = None) -> Callable:
    """Build the Kubeflow pipeline function with the cluster `settings` (defaults if None).

    The two training tasks run in the GPU image on the GPU node pool (accelerator limit,
    node selector, toleration, /dev/shm); every task gets CPU/memory requests and limits,
    runs as the image's non-root user, and gets only the Secrets it needs, by name.
    """
    settings = settings or ClusterSettings()
    ops = build_components(settings.image, settings.gpu_image)

    @dsl.pipeline(name=PIPELINE_NAME, pipeline_root=settings.pipeline_root,
                  description="Movie genres from posters: ingest, validate, split, "
                  "augment, train two CNNs, evaluate against the null model, gate, register.")
    def postergenre_pipeline(
        source: str = "demo",
        data_version: str = "",
        n_posters: int = 1500,
        data_seed: int = 0,
        poster_width: int = 96,
        poster_height: int = 144,
        dvc_remote_url: str = "",
        dvc_endpoint_url: str = "",
        movielens_release: str = "ml-latest-small",
        label_source: str = "tmdb",
        poster_size: str = "w500",
        max_movies: int = 0,
        tmdb_rate_limit: float = 20.0,
        tmdb_concurrency: int = 8,
        movielens_url: str = "",
        tmdb_api_url: str = "",
        tmdb_image_url: str = "",
        local_dir: str = "",
        train_fraction: float = 0.6,
        validation_fraction: float = 0.2,
        split_seed: int = 42,
        min_genre_support: int = 1,
        augment_transforms: list = ["hflip", "crop", "jitter"],  # noqa: B006 - kfp reads it
        max_upsample: float = 3.0,
        image_size: int = 128,
        shard_size: int = 1000,
        max_class_weight: float = 10.0,
        scratch_conv1_filters: int = 64,
        scratch_conv2_filters: int = 128,
        scratch_dense_units: int = 256,
        scratch_epochs: int = 100,
        scratch_learning_rate: float = 0.1,
        scratch_clipnorm: float = 0.0,
        vgg16_weights: str = "imagenet",
        vgg16_dense_units: int = 4096,
        vgg16_epochs: int = 50,
        vgg16_learning_rate: float = 0.01,
        vgg16_backbone: str = "vgg16",
        vgg16_fine_tune_epochs: int = 0,
        vgg16_fine_tune_learning_rate: float = 1e-4,
        require_gpu: bool = False,
        batch_size: int = 32,
        momentum: float = 0.9,
        lr_patience: int = 15,
        stop_patience: int = 20,
        train_seed: int = 0,
        min_f1_micro_margin: float = 0.05,
        min_map_margin: float = 0.05,
        max_hamming_loss_increase: float = 0.0,
        min_f1_micro: float = 0.0,
        min_map_macro: float = 0.0,
        blessed_epsilon: float = 0.02,
        genre_ap_floors: str = "",
        max_genre_ap_drop: float = -1.0,
        bootstrap_resamples: int = 200,
        report_posters: int = 12,
        registry: str = "registry",
        batch_predict_runner: str = "DirectRunner",
    ) -> str:
        ingest = ops.ingest(source=source, n_posters=n_posters, seed=data_seed,
                            width=poster_width, height=poster_height,
                            remote_url=dvc_remote_url, endpoint_url=dvc_endpoint_url,
                            movielens_release=movielens_release, label_source=label_source,
                            poster_size=poster_size, max_movies=max_movies,
                            rate_limit=tmdb_rate_limit, concurrency=tmdb_concurrency,
                            movielens_url=movielens_url, tmdb_api_url=tmdb_api_url,
                            tmdb_image_url=tmdb_image_url, local_dir=local_dir,
                            # The md5 in data.dvc: the cache key then follows the data.
                            data_version=data_version)
        validate = ops.validate(dataset=ingest.outputs["dataset"],
                                min_genre_support=min_genre_support)
        split = ops.split(validated=validate.outputs["validated"],
                          train_fraction=train_fraction,
                          validation_fraction=validation_fraction, seed=split_seed)
        augment = ops.augment(dataset=ingest.outputs["dataset"],
                              splits=split.outputs["splits"], transforms=augment_transforms,
                              max_upsample=max_upsample, image_size=image_size,
                              shard_size=shard_size, max_class_weight=max_class_weight)
        prepared = augment.outputs["prepared"]
        scratch = ops.train_scratch(
            prepared=prepared, conv1_filters=scratch_conv1_filters,
            conv2_filters=scratch_conv2_filters, dense_units=scratch_dense_units,
            epochs=scratch_epochs, batch_size=batch_size, learning_rate=scratch_learning_rate,
            clipnorm=scratch_clipnorm, require_gpu=require_gpu, data_version=data_version,
            momentum=momentum, lr_patience=lr_patience, stop_patience=stop_patience,
            seed=train_seed)
        vgg16 = ops.train_vgg16(
            prepared=prepared, weights=vgg16_weights, backbone=vgg16_backbone,
            dense_units=vgg16_dense_units, fine_tune_epochs=vgg16_fine_tune_epochs,
            fine_tune_learning_rate=vgg16_fine_tune_learning_rate, require_gpu=require_gpu,
            data_version=data_version,
            epochs=vgg16_epochs, batch_size=batch_size, learning_rate=vgg16_learning_rate,
            momentum=momentum, lr_patience=lr_patience, stop_patience=stop_patience,
            seed=train_seed)
        for task, label in ((scratch, "train CNN from scratch"), (vgg16, "train VGG16 head")):
            task.set_display_name(f"{label} (GPU)")
        evaluate = ops.evaluate(prepared=prepared, scratch_model=scratch.outputs["model"],
                                vgg16_model=vgg16.outputs["model"], registry=registry,
                                resamples=bootstrap_resamples, report_posters=report_posters)
        gate = ops.gate(evaluation=evaluate.outputs["evaluation"],
                        min_f1_micro_margin=min_f1_micro_margin, min_map_margin=min_map_margin,
                        max_hamming_loss_increase=max_hamming_loss_increase,
                        min_f1_micro=min_f1_micro, min_map_macro=min_map_macro,
                        epsilon=blessed_epsilon, genre_ap_floors=genre_ap_floors,
                        max_genre_ap_drop=max_genre_ap_drop)
        with dsl.If(gate.outputs["Output"] == "blessed", name="blessed"):
            register = ops.register(blessing=gate.outputs["blessing"],
                                    scratch_model=scratch.outputs["model"],
                                    vgg16_model=vgg16.outputs["model"], registry=registry,
                                    data_version=data_version)
            # The registered model scores the test shards on Beam (a catalogue's dry run).
            ops.batch_predict(model=register.outputs["registered"], prepared=prepared,
                              blessing=gate.outputs["blessing"], split="test",
                              runner=batch_predict_runner)
        # Last, so that it configures every task above (GPU pool, resources, secrets, cache).
        apply_cluster_settings(settings)
        return gate.outputs["Output"]

    return postergenre_pipeline
