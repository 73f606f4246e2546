"""Kubeflow wrapper of `postergenre.registry.register` (runs only inside `dsl.If`)."""

from kfp.dsl import Artifact, Input, Model, Output


def register(blessing: Input[Artifact], scratch_model: Input[Model], vgg16_model: Input[Model],
             registry: str, registered: Output[Model]):
    """Copy the blessed model into the registry; the artifact records where it went."""
    import shutil

    from postergenre.registry import register as run

    entry = run(blessing.path, {"scratch": scratch_model.path, "vgg16": vgg16_model.path},
                registry)
    if entry is None:
        raise RuntimeError("register ran although the gate rejected every model")
    shutil.copytree(entry / "model", registered.path)
    registered.metadata.update({"registry_entry": str(entry), "registry": registry})
