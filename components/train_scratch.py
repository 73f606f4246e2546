"""Kubeflow wrapper of `postergenre.train.train_scratch` (a GPU task on a cluster)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def train_scratch(prepared: Input[Dataset], model: Output[Model], metrics: Output[Metrics],
                  conv1_filters: int = 64, conv2_filters: int = 128, dense_units: int = 256,
                  epochs: int = 100, batch_size: int = 32, learning_rate: float = 0.1,
                  momentum: float = 0.9, lr_patience: int = 15, stop_patience: int = 20,
                  clipnorm: float = 0.0, seed: int = 0, require_gpu: bool = False,
                  data_version: str = ""):
    """Train the study's CNN from scratch; the model folder is the Model artifact."""
    from postergenre.train import train_scratch as run

    info = run(prepared.path, model.path, conv1_filters=conv1_filters,
               conv2_filters=conv2_filters, dense_units=dense_units, epochs=epochs,
               batch_size=batch_size, learning_rate=learning_rate, momentum=momentum,
               lr_patience=lr_patience, stop_patience=stop_patience, clipnorm=clipnorm,
               seed=seed, require_gpu=require_gpu, data_version=data_version)
    model.metadata.update({k: info[k] for k in ("model", "image_size", "parameters",
                                                "best_epoch", "best_val_loss", "device",
                                                "data_version")})
    for key in ("best_val_loss", "best_val_auc", "epochs_run", "train_images_per_second"):
        if info.get(key) is not None:
            metrics.log_metric(key, float(info[key]))
