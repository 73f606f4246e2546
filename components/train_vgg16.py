"""Kubeflow wrapper of `postergenre.train.train_vgg16` (a GPU task on a cluster)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def train_vgg16(prepared: Input[Dataset], model: Output[Model], metrics: Output[Metrics],
                weights: str = "imagenet", backbone: str = "vgg16", dense_units: int = 4096,
                epochs: int = 50, batch_size: int = 32, learning_rate: float = 0.01,
                momentum: float = 0.9, lr_patience: int = 15, stop_patience: int = 20,
                fine_tune_epochs: int = 0, fine_tune_learning_rate: float = 1e-4,
                seed: int = 0, require_gpu: bool = False, data_version: str = ""):
    """Train the dense head on a frozen pretrained base; the model folder is the artifact.

    `weights` may be an s3:// URI: the AWS credentials come from the task's environment.
    """
    from postergenre.train import train_vgg16 as run

    info = run(prepared.path, model.path, weights=weights, backbone=backbone,
               dense_units=dense_units, epochs=epochs, batch_size=batch_size,
               learning_rate=learning_rate, momentum=momentum, lr_patience=lr_patience,
               stop_patience=stop_patience, fine_tune_epochs=fine_tune_epochs,
               fine_tune_learning_rate=fine_tune_learning_rate, seed=seed,
               require_gpu=require_gpu, data_version=data_version)
    model.metadata.update({k: info[k] for k in ("model", "backbone", "image_size",
                                                "parameters", "best_epoch", "best_val_loss",
                                                "device", "data_version")})
    for key in ("best_val_loss", "best_val_auc", "epochs_run", "train_images_per_second"):
        if info.get(key) is not None:
            metrics.log_metric(key, float(info[key]))
