"""Kubeflow wrapper of `postergenre.registry.register` (runs only inside `dsl.If`)."""

from kfp.dsl import Artifact, Input, Model, Output


def register(blessing: Input[Artifact], scratch_model: Input[Model], vgg16_model: Input[Model],
             registry: str, registered: Output[Model], data_version: str = ""):
    """Write the blessed model once into the registry (folder or s3://) and move `latest`;
    the Model artifact carries the registry URI, the data version and the metrics."""
    import json
    import shutil

    from postergenre.registry import register as run

    models = {"scratch": scratch_model.path, "vgg16": vgg16_model.path}
    entry = run(blessing.path, models, registry, data_version or None)
    if entry is None:
        raise RuntimeError("register ran although the gate rejected every model")
    with open(blessing.path) as handle:
        content = json.load(handle)
    # The entry holds exactly these bytes (it is named by their hash): copy the source,
    # not `latest`, which a concurrent run may already have moved.
    shutil.copytree(models[content["model"]], registered.path)
    entry_name = str(entry).rstrip("/").rsplit("/", 1)[-1]
    registered.metadata.update({
        "registry": registry, "registry_uri": f"{registry.rstrip('/')}/{entry_name}",
        "entry": entry_name, "model": content["model"], "data_version": data_version,
        "metrics": {k: v for k, v in (content["metrics"] or {}).items() if v is not None},
    })
