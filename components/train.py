"""Kubeflow wrapper of `postergenre.training.train.train_model`: one `models` entry, trained (a GPU
task on a cluster; the pipeline runs one per model)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def train(prepared: Input[Dataset], model: Output[Model], metrics: Output[Metrics], name: str,
          models: dict, data_version: str = ""):
    """Train the model `name` of the `models` section (params.yaml's, compiled in as the
    pipeline parameter of that name); the model folder is the Model artifact."""
    from postergenre.configs import model_spec
    from postergenre.lineage import stamp, task_lineage
    from postergenre.training.checkpoint import checkpoint_for_output
    from postergenre.training.train import train_model

    if name not in models:
        raise ValueError(f"models: no model {name!r} (known: {', '.join(models)}); the "
                         "pipeline was compiled with it, so keep it in the models parameter")
    # Where the last finished epoch is kept, for a retry of this task to resume from.
    # What KFP gives (backend v2 driver and launcher): a task's retries (its
    # retryPolicy, an Argo retryStrategy on the executor pod) reuse the executor input
    # the driver computed once, so a retried task has the same output URI,
    # model.uri. But model.path is a folder inside the pod (/s3/..., /minio/..., /gcs/...)
    # that the launcher uploads only after the task succeeds: a retry runs in a new
    # pod, where that folder starts empty. So the checkpoint goes next to the output
    # URI itself, `<model.uri>.checkpoint`, when that is an s3:// URL (a pipeline root on
    # S3: the task's S3 credentials must be able to write there); a minio:// or gs://
    # root, or the local runner, keeps it beside model.path, where a retry does not
    # find it. (A manual retry of the whole run may get new output URIs, depending on
    # the backend version: such a run starts over.)
    checkpoint = checkpoint_for_output(model.uri)
    spec = model_spec(name, models[name])
    info = train_model(prepared.path, model.path, spec, data_version, checkpoint)
    # evaluate and register find each model by this name (they take the whole collection).
    model.metadata.update({"name": name, **{k: info[k] for k in (
        "kind", "description", "image_size", "parameters", "best_epoch", "best_val_loss",
        "device", "data_version", "resumed_from_epoch") if info.get(k) is not None}})
    # The KFP UI labels an artifact by its `display_name` (the output's name, `model`, unless
    # the metadata sets one: backend/src/v2/metadata/client.go RecordArtifact), and its
    # Compare view lists every training's metrics side by side: both carry the model's
    # name, as evaluate's keys do (`model.metric`). Every training is one task of the
    # ParallelFor, whose display name cannot name its item.
    model.metadata["display_name"] = name
    metrics.metadata["display_name"] = f"{name} metrics"
    for key in ("best_val_loss", "best_val_auc", "epochs_run", "train_images_per_second"):
        if info.get(key) is not None:
            metrics.log_metric(f"{name}.{key}", float(info[key]))
    # Where the model came from (gate and register hand it on to the registry entry); the
    # hashed sections are the same as under DVC (`{"models": {name: spec}}`).
    stamp(task_lineage(data_version, {"models": {name: spec}}), model, metrics)
