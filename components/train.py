"""Kubeflow wrapper of `postergenre.train.train_model`: one `models` entry, trained (a GPU
task on a cluster; the pipeline runs one per model)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def train(prepared: Input[Dataset], model: Output[Model], metrics: Output[Metrics], name: str,
          models: dict, data_version: str = ""):
    """Train the model `name` of the `models` section (params.yaml's, compiled in as the
    pipeline parameter of that name); the model folder is the Model artifact."""
    from postergenre.configs import model_spec
    from postergenre.train import train_model

    if name not in models:
        raise ValueError(f"models: no model {name!r} (known: {', '.join(models)}); the "
                         "pipeline was compiled with it, so keep it in the models parameter")
    info = train_model(prepared.path, model.path, model_spec(name, models[name]), data_version)
    # evaluate and register find each model by this name (they take the whole collection).
    model.metadata.update({"name": name, **{k: info[k] for k in (
        "kind", "description", "image_size", "parameters", "best_epoch", "best_val_loss",
        "device", "data_version") if info.get(k) is not None}})
    for key in ("best_val_loss", "best_val_auc", "epochs_run", "train_images_per_second"):
        if info.get(key) is not None:
            metrics.log_metric(key, float(info[key]))
