"""Kubeflow wrapper of `postergenre.train.train_vgg16` (a GPU task on a cluster)."""

from kfp.dsl import Dataset, Input, Model, Output


def train_vgg16(prepared: Input[Dataset], model: Output[Model], weights: str = "imagenet",
                dense_units: int = 4096, epochs: int = 50, batch_size: int = 32,
                learning_rate: float = 0.01, momentum: float = 0.9, lr_patience: int = 15,
                stop_patience: int = 20, seed: int = 0):
    """Train the dense head on a frozen VGG16 base; the model folder is the Model artifact."""
    from postergenre.train import train_vgg16 as run

    info = run(prepared.path, model.path, weights=weights, dense_units=dense_units,
               epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
               momentum=momentum, lr_patience=lr_patience, stop_patience=stop_patience,
               seed=seed)
    model.metadata.update({k: info[k] for k in ("model", "image_size", "parameters",
                                                "best_epoch", "best_val_loss", "device")})
