"""The pipeline factory: every stage chained, nothing run at import (as TFX's
`create_pipeline()`).

Compile-time settings are the arguments of `create_pipeline`: the cluster
(`ClusterSettings` in platform.py: images, GPU node pool, resources, Secret names,
caching, pipeline root) and the experiment (`configs.Experiment`, read from params.yaml).
The pipeline function it returns has a few run-level parameters (source, data version,
registry) and one dict parameter per params.yaml section, named after it, whose default
is that section's values: a run with default parameters is the experiment `dvc repro`
runs. Each component validates its dict into the stage's typed config before doing
anything. One training task runs per entry of `models` (a ParallelFor over the model
names known at compile time); evaluate and register take every trained model at once
(`dsl.Collected`), and a `roc` task per model turns evaluate's curves into one
ClassificationMetrics artifact each. Stages pass typed artifacts (Dataset, Model, Metrics,
ClassificationMetrics, HTML, the gate's Markdown decision card), so the Kubeflow UI shows
each run's lineage, and every output artifact's metadata carries `postergenre.lineage`'s
fields (data version, git commit, params hash, image). Posters reach the cluster one
way: `source=dvc` with the md5 in data.dvc as `data_version`, pulled from the DVC remote
on S3 inside ingest.
"""

# No `from __future__ import annotations` here: kfp reads the pipeline function's
# annotations as real types.
from collections.abc import Callable

from kfp import dsl

from postergenre.components import build_components
from postergenre.configs import Experiment, load_experiment
from postergenre.pipelines.platform import GPU_RESOURCE, ClusterSettings, apply_cluster_settings
from postergenre.typed_config import DEFAULT_PARAMS

PIPELINE_NAME = "postergenre"
# The pipeline's own parameters, beside one dict per params.yaml section.
RUN_PARAMETERS = ("source", "data_version", "registry", "batch_predict_runner")
# The `registry` parameter's default without a model_registry: a folder, right for
# kfp.local (`postergenre pipeline run --local`) only.
LOCAL_REGISTRY = "registry"
__all__ = ["GPU_RESOURCE", "LOCAL_REGISTRY", "PIPELINE_NAME", "RUN_PARAMETERS",
           "ClusterSettings", "create_pipeline"]


def create_pipeline(settings: ClusterSettings | None = None,
                    experiment: Experiment | None = None) -> Callable:
    """Build the Kubeflow pipeline function for the cluster `settings` (defaults if None)
    and the `experiment` (default: params.yaml in the current folder).

    The training tasks run in the GPU image on the GPU node pool (accelerator limit,
    node selector, toleration, /dev/shm) and, with `settings.require_gpu`, fail when they
    see no GPU; every task gets CPU/memory requests and limits, a retry policy, and only
    the Secrets it needs, by name. The description names the oldest KFP backend that
    runs it.
    """
    settings = settings or ClusterSettings()
    experiment = experiment or load_experiment(DEFAULT_PARAMS)
    sections = experiment.sections()
    if settings.require_gpu:
        # A training task on the GPU pool that sees no GPU (driver, device plugin, image)
        # fails at once instead of training for hours on the CPU.
        sections["models"] = {name: {**entry, "require_gpu": True}
                              for name, entry in sections["models"].items()}
    model_names = [spec.name for spec in experiment.models]
    ops = build_components(settings.stage_images())

    @dsl.pipeline(name=PIPELINE_NAME, pipeline_root=settings.pipeline_root or None,
                  description="Movie genres from posters: ingest, validate, split, augment, "
                  f"train {', '.join(model_names)}, evaluate against the null model, gate, "
                  f"register. {settings.backend_note()}")
    def postergenre_pipeline(
        source: str = "demo",
        data_version: str = "",
        # A folder inside the task's pod unless compiled with a model_registry URI:
        # `submit` refuses to run it so (-p registry=s3://... or --model-registry).
        registry: str = settings.model_registry or LOCAL_REGISTRY,
        batch_predict_runner: str = "DirectRunner",
        ingest: dict = sections["ingest"],
        validate: dict = sections["validate"],
        split: dict = sections["split"],
        augment: dict = sections["augment"],
        models: dict = sections["models"],
        evaluate: dict = sections["evaluate"],
        gate: dict = sections["gate"],
    ) -> str:
        # data_version (the md5 in data.dvc) is an input of every task: it selects the
        # data (ingest), goes into each output artifact's lineage, and so into each
        # task's cache key, which then follows the data.
        ingest_task = ops.ingest(config=ingest, source=source, data_version=data_version)
        dataset = ingest_task.outputs["dataset"]
        validate_task = ops.validate(dataset=dataset, config=validate,
                                     data_version=data_version)
        split_task = ops.split(validated=validate_task.outputs["validated"], config=split,
                               data_version=data_version)
        augment_task = ops.augment(dataset=dataset, splits=split_task.outputs["splits"],
                                   config=augment, data_version=data_version)
        prepared = augment_task.outputs["prepared"]
        with dsl.ParallelFor(items=model_names, name="models") as model_name:
            train_task = ops.train(prepared=prepared, name=model_name, models=models,
                                   data_version=data_version)
            train_task.set_display_name("train a model (GPU)")
        evaluate_task = ops.evaluate(prepared=prepared,
                                     models=dsl.Collected(train_task.outputs["model"]),
                                     config=evaluate, registry=registry,
                                     data_version=data_version)
        # Each model's ROC as its own ClassificationMetrics artifact (the UI draws one
        # curve per artifact; a component's outputs are fixed, so one task per model).
        with dsl.ParallelFor(items=model_names, name="roc-curves") as curve_name:
            roc_task = ops.roc(evaluation=evaluate_task.outputs["evaluation"], name=curve_name,
                               data_version=data_version)
            roc_task.set_display_name("ROC of a model")
        # A Collected channel is consumed once (kfp 2.17 fails to compile a shared one):
        # a fresh one per consumer.
        gate_task = ops.gate(evaluation=evaluate_task.outputs["evaluation"],
                             models=dsl.Collected(train_task.outputs["model"]), config=gate,
                             data_version=data_version)
        with dsl.If(gate_task.outputs["Output"] == "blessed", name="blessed"):
            register_task = ops.register(blessing=gate_task.outputs["blessing"],
                                         model=gate_task.outputs["blessed_model"],
                                         registry=registry, data_version=data_version)
            # The registered model scores the test shards on Beam (a catalogue's dry run).
            ops.batch_predict(model=register_task.outputs["registered"], prepared=prepared,
                              blessing=gate_task.outputs["blessing"], split="test",
                              runner=batch_predict_runner, data_version=data_version)
        # Last, so that it configures every task above (GPU pool, resources, secrets, cache).
        apply_cluster_settings(settings)
        return gate_task.outputs["Output"]

    return postergenre_pipeline
