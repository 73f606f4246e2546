"""Thin Kubeflow Pipelines components, one module per stage.

Each module holds one plain function that maps KFP artifacts onto one library function
of `postergenre`; `build_components(images)` turns them into lightweight Python
components, each with its stage's image as `base_image` (a compile-time setting: the
cluster settings' stage profiles put the training stage in the GPU image, TensorFlow's
CUDA base, and every other stage in the CPU image). No pip install at run time: both
images hold the package and kfp.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace

from kfp import dsl

from . import (
    augment,
    batch_predict,
    evaluate,
    gate,
    ingest,
    register,
    roc,
    split,
    train,
    validate,
)

STAGES = {
    "ingest": ingest.ingest,
    "validate": validate.validate,
    "split": split.split,
    "augment": augment.augment,
    "train": train.train,
    "evaluate": evaluate.evaluate,
    "roc": roc.roc,
    "gate": gate.gate,
    "register": register.register,
    "batch_predict": batch_predict.batch_predict,
}


def build_components(images: Mapping[str, str]) -> SimpleNamespace:
    """Every stage as a KFP component in its image (`images`: stage -> image reference,
    ClusterSettings.stage_images())."""
    missing = [name for name in STAGES if name not in images]
    if missing:
        raise ValueError(f"no image for the stage(s) {', '.join(missing)}")
    return SimpleNamespace(**{
        name: dsl.component(func, install_kfp_package=False, base_image=images[name])
        for name, func in STAGES.items()
    })
