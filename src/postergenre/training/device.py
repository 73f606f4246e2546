"""Where and how a training step runs: the device, its strategy and precision, seeding.

The same code runs on the CPU and on GPUs: when TensorFlow sees a GPU, training uses a
MirroredStrategy over every visible GPU, with `batch_size` per replica (0: 32 on the CPU,
128 per GPU), and the `mixed_precision` the device suits (auto: float16 below compute
capability 8, bfloat16 from 8; on the CPU bfloat16 where it has AMX units, for the
scratch CNN and the backbones of dense convolutions (training.backbones: VGG16, not
EfficientNet-Lite0), else float32; float32 outputs).
`deterministic` asks for deterministic kernels (same seed, same metrics) at a cost in
speed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf


class NoGpuError(RuntimeError):
    """A step asked to run on a GPU (require_gpu) found none."""


@dataclass(frozen=True)
class Device:
    """Where a training step runs, and how (strategy, replicas, precision)."""

    strategy: tf.distribute.Strategy
    kind: str
    gpus: tuple[str, ...]
    replicas: int
    precision: str

    def describe(self) -> dict:
        return {"device": self.kind, "gpus": list(self.gpus), "replicas": self.replicas,
                "precision": self.precision}


# `batch_size: 0`: images per batch and replica chosen for the device. A GPU needs large
# batches to stay busy; on the CPU a larger batch only means fewer updates per epoch.
AUTO_BATCH = {"cpu": 32, "gpu": 128}
POLICIES = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def _compute_capability(gpu: tf.config.PhysicalDevice) -> tuple[int, int]:
    details = tf.config.experimental.get_device_details(gpu)
    return tuple(details.get("compute_capability") or (0, 0))


# The CPU flag of bfloat16 matrix units (Intel AMX, Xeon 4th generation on). Measured on
# such a CPU (2 cores, 2026-12-02): bfloat16 took 0.44x float32's CPU time per image to
# train the scratch CNN at 64 px and 0.14x to run VGG16 at 224 px. With oneDNN capped
# below AMX (ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16, the AVX512-BF16 instructions alone)
# bfloat16 took 1.4x float32's time, and 3.3x without them: only AMX makes it pay.
CPU_BFLOAT16_FLAG = "amx_bf16"
# Scoring (no gradients) in bfloat16 pays off with the AVX512-BF16 instructions too: on
# a 2-core AMD EPYC with them and no AMX (2026-12-07, bench/precision.py) the scratch CNN
# scored posters in 0.54x float32's CPU time, and in 2.7x with oneDNN kept below them.
CPU_BFLOAT16_INFERENCE_FLAGS = (CPU_BFLOAT16_FLAG, "avx512_bf16")


def cpu_has_bfloat16_units(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo",
                           flags: tuple[str, ...] = (CPU_BFLOAT16_FLAG,)) -> bool:
    """Whether this CPU has bfloat16 matrix units (AMX; or any of `flags`), from the
    kernel's CPU flags (False where there is no /proc/cpuinfo: macOS, Windows)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    return any(line.startswith("flags") and set(flags) & set(line.split())
               for line in text.splitlines())


def scores_natively(policy: str) -> bool:
    """Whether this machine computes a model of dtype `policy` without emulating it:
    float32 anywhere; bfloat16 on GPUs of compute capability 8 and up, or a CPU with
    bfloat16 instructions; float16 on GPUs of compute capability 7 and up."""
    if policy == "float32":
        return True
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        oldest = min(_compute_capability(gpu) for gpu in gpus)
        return oldest >= ((8, 0) if policy == "mixed_bfloat16" else (7, 0))
    return policy == "mixed_bfloat16" and cpu_has_bfloat16_units(
        flags=CPU_BFLOAT16_INFERENCE_FLAGS)


def precision_policy(mixed_precision: str, gpus: list,
                     cpu_bfloat16: bool | None = None, dense_convolutions: bool = True) -> str:
    """The Keras dtype policy for `mixed_precision` on these GPUs (none: the CPU).

    auto: float16 below compute capability 8 (T4, V100: tensor cores for float16 only,
    with loss scaling), bfloat16 from 8 on (A100, L4, H100: float32's range, no loss
    scaling); on the CPU bfloat16 for a model of `dense_convolutions` where the CPU has
    bfloat16 matrix units (`cpu_bfloat16`, default: read from this machine, see
    cpu_has_bfloat16_units), else float32 (without them, or for depthwise convolutions,
    bfloat16 is slower). Weights and outputs stay float32 either way.
    """
    if mixed_precision != "auto":
        if mixed_precision not in POLICIES:
            raise ValueError(f"mixed_precision {mixed_precision!r} is not one of auto, "
                             f"{', '.join(POLICIES)}")
        return POLICIES[mixed_precision]
    if not gpus:
        if cpu_bfloat16 is None:
            cpu_bfloat16 = cpu_has_bfloat16_units()
        return "mixed_bfloat16" if cpu_bfloat16 and dense_convolutions else "float32"
    oldest = min(_compute_capability(gpu) for gpu in gpus)
    return "mixed_bfloat16" if oldest >= (8, 0) else "mixed_float16"


def per_replica_batch(batch_size: int, device: Device) -> int:
    """The configured images per batch and replica, or (0) the device's default."""
    return batch_size or AUTO_BATCH[device.kind]


@contextlib.contextmanager
def training_device(require_gpu: bool = False, mixed_precision: str = "auto",
                    dense_convolutions: bool = True) -> Iterator[Device]:
    """Pick the strategy and precision (`mixed_precision` for a model of
    `dense_convolutions` or not, see precision_policy) for the visible hardware; restore
    them after.

    With `require_gpu`, fail fast (before any data is read) when no GPU is visible: a
    task scheduled on a GPU node that lost its driver should not train for hours on CPU.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if require_gpu and not gpus:
        raise NoGpuError(
            "this step was asked to run on a GPU (require_gpu) but TensorFlow sees none: "
            "check the node's NVIDIA driver, the nvidia.com/gpu resource request and that "
            "the image is the GPU image; set require_gpu false to train on the CPU")
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(
        precision_policy(mixed_precision, gpus, dense_convolutions=dense_convolutions))
    if gpus:
        strategy: tf.distribute.Strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    device = Device(strategy, "gpu" if gpus else "cpu", tuple(g.name for g in gpus),
                    strategy.num_replicas_in_sync,
                    keras.mixed_precision.global_policy().name)
    try:
        with strategy.scope():
            yield device
    finally:
        keras.mixed_precision.set_global_policy(previous)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and TensorFlow; with `deterministic`, deterministic kernels
    too (same seed, same metrics), else the fastest ones. The switch is process-wide:
    set it both ways, so one run's choice does not leak into the next."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        # TensorFlow exports only the switch on; the off switch is beside it.
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()
