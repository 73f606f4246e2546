"""Thin Kubeflow Pipelines components, one module per stage.

Each module holds one plain function that maps KFP artifacts onto one library function
of `postergenre`; `build_components(image, gpu_image)` turns them into lightweight Python
components whose `base_image` is one of the project's two images (compile-time settings):
the training stages run in the GPU image (TensorFlow's CUDA base), every other stage in
the CPU image. No pip install at run time: both images hold the package and kfp.
"""

from __future__ import annotations

from types import SimpleNamespace

from kfp import dsl

from . import (
    augment,
    batch_predict,
    evaluate,
    gate,
    ingest,
    register,
    split,
    train,
    validate,
)

DEFAULT_IMAGE = "ghcr.io/postergenre/postergenre:0.1.0"
DEFAULT_GPU_IMAGE = "ghcr.io/postergenre/postergenre-gpu:0.1.0"
# The stage that trains the models: GPU image, GPU node pool (pipelines/platform.py).
GPU_STAGES = ("train",)
STAGES = {
    "ingest": ingest.ingest,
    "validate": validate.validate,
    "split": split.split,
    "augment": augment.augment,
    "train": train.train,
    "evaluate": evaluate.evaluate,
    "gate": gate.gate,
    "register": register.register,
    "batch_predict": batch_predict.batch_predict,
}


def build_components(image: str = DEFAULT_IMAGE, gpu_image: str | None = None) -> SimpleNamespace:
    """Every stage as a KFP component: GPU_STAGES in `gpu_image` (default: `image`, so a
    single image still works), the others in `image`."""
    return SimpleNamespace(**{
        name: dsl.component(func, install_kfp_package=False,
                            base_image=(gpu_image or image) if name in GPU_STAGES else image)
        for name, func in STAGES.items()
    })
