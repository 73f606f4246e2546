"""Kubeflow wrapper of `postergenre.serving.registry.register` (runs only inside `dsl.If`)."""

from kfp.dsl import Artifact, Input, Model, Output


def register(blessing: Input[Artifact], model: Input[Model], registry: str,
             registered: Output[Model], data_version: str = ""):
    """Write the blessed model (the gate's `blessed_model`) once into the registry (folder
    or s3://) and move `latest`; the Model artifact carries the registry URI, the data
    version and the metrics. The model's lineage (data version, git commit, params hash,
    image of the training task that made it) goes into the registry entry and onto the
    Model artifact."""
    import shutil

    from postergenre.lineage import lineage_of, stamp, task_lineage
    from postergenre.serving.registry import register as run

    name = model.metadata["name"]
    # The training task's lineage, carried by the model artifact; a model without one
    # (trained by an older image) gets this task's, with the params hash unknown.
    lineage = {**task_lineage(data_version, {}).as_metadata(), "params_hash": "",
               **lineage_of(model.metadata)}
    entry = run(blessing.path, {name: model.path}, registry, data_version or None,
                lineage={name: lineage})
    if entry is None:
        raise RuntimeError("register ran although the gate rejected every model")
    # The entry holds exactly these bytes (it is named by their hash): copy the source,
    # not `latest`, which a concurrent run may already have moved.
    shutil.copytree(model.path, registered.path)
    entry_name = str(entry).rstrip("/").rsplit("/", 1)[-1]
    registered.metadata.update({
        "registry": registry, "registry_uri": f"{registry.rstrip('/')}/{entry_name}",
        "entry": entry_name, "model": name, "data_version": data_version,
        "display_name": f"{name} (registered)",
        "metrics": {k: v for k, v in model.metadata.items() if k == "description"},
    })
    stamp(lineage, registered)
