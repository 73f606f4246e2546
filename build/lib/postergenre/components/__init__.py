"""Thin Kubeflow Pipelines components, one module per stage.

Each module holds one plain function that maps KFP artifacts onto one library function
of `postergenre`; `build_components(image)` turns them into lightweight Python
components whose `base_image` is the project's image (a compile-time setting), with
no pip install at run time (the image already holds the package and kfp).
"""

from __future__ import annotations

from types import SimpleNamespace

from kfp import dsl

from . import (
    augment,
    evaluate,
    gate,
    ingest,
    register,
    split,
    train_scratch,
    train_vgg16,
    validate,
)

DEFAULT_IMAGE = "ghcr.io/postergenre/postergenre:0.1.0"
STAGES = {
    "ingest": ingest.ingest,
    "validate": validate.validate,
    "split": split.split,
    "augment": augment.augment,
    "train_scratch": train_scratch.train_scratch,
    "train_vgg16": train_vgg16.train_vgg16,
    "evaluate": evaluate.evaluate,
    "gate": gate.gate,
    "register": register.register,
}


def build_components(image: str = DEFAULT_IMAGE) -> SimpleNamespace:
    """Every stage as a KFP component running in `image`."""
    return SimpleNamespace(**{
        name: dsl.component(func, base_image=image, install_kfp_package=False)
        for name, func in STAGES.items()
    })
