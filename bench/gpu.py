"""GPU training throughput: the study-size scratch CNN and the transfer model, on generated
posters streamed from JPEG files, at 128 and 224 px.

    .venv/bin/python bench/gpu.py [--posters 36000] [--sizes 128 224] [--batch 64]
        [--repeats 3] [--precision float32] [--device gpu]

With `--device gpu` (the default) and no GPU visible to TensorFlow
(`tf.config.list_physical_devices('GPU')` is empty), it says so and exits 0: there is
nothing to measure. Otherwise:
1. `--posters` synthetic posters (random colour fields, 256x384, JPEG quality 90, random
   genres) are written to a temporary folder;
2. for each size, a tf.data pipeline reads, decodes (TensorFlow's decoder) and resizes them
   (bilinear), batches and prefetches;
3. two models from the library train on it: the study-size scratch CNN
   (`models.build_scratch_cnn` with the study's 64-128 filters and 256 dense units) and the
   transfer model (`bases.build_transfer_base` + `build_head` with TransferConfig's
   defaults: a frozen VGG16 base, random weights, the same compute as ImageNet's, and the
   gap head), end to end: every step runs the frozen base forward, as an epoch without the
   feature cache would. Loss only (no metrics, no callbacks): the figure is the model's.
Each (model, size) gets one warm-up pass of a few steps (tracing, XLA, cuDNN autotuning),
then `--repeats` epochs over all posters, each timed; the figure is the median epoch's
images per second. Printed with it: GPU utilisation sampled by `nvidia-smi` every 200 ms
during the timed epochs (mean and max), peak GPU memory (TensorFlow's allocator,
`tf.config.experimental.get_memory_info`, reset before the warm-up) and host CPU time per
image (the input pipeline's decode and resize). `--device cpu` runs the same on the CPU
(GPU figures n/a): a check of the script itself at a small `--posters`.

The ceiling, measured in the same run: the input pipeline alone (the same dataset
iterated for one epoch without a model, per size: what the host can feed), and the
device's matrix-product rate (square products of 4096, 1024 on a CPU, in the policy's
compute dtype, wall clock, the result read back): the bound of the models' convolutions.

The last two lines (bench/measure.py's `closing_lines`):

    ceiling: input pipeline alone N img/s at S px (...); matmul T GFLOP/s on DEVICE ...
    gpu: N img/s scratch CNN at S px (X us host CPU per image, median epoch wall ...);
    transfer M img/s; (every other size)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from measure import Summary, closing_lines, load_line, repeat  # noqa: E402

SOURCE_SIZE = (256, 384)  # width, height of the generated posters: above every target size
STUDY_SCRATCH = {"conv1_filters": 64, "conv2_filters": 128, "dense_units": 256}
WARMUP_STEPS = 3
NO_GPU = "gpu: no GPU is visible to TensorFlow; nothing to measure"


class GpuSampler:
    """`nvidia-smi`'s GPU utilisation of device 0, sampled every `interval_ms` while open."""

    def __init__(self, interval_ms: int = 200) -> None:
        self.interval_ms = interval_ms
        self.samples: list[float] = []
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi") is None:
            return self
        self._process = subprocess.Popen(
            ["nvidia-smi", "-i", "0", "--query-gpu=utilization.gpu",
             "--format=csv,noheader,nounits", f"-lms={self.interval_ms}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:  # "[N/A]" on a GPU that does not report it
                continue

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
        if self._thread is not None:
            self._thread.join(10)

    def describe(self) -> str:
        if not self.samples:
            return "GPU utilisation n/a (no nvidia-smi samples)"
        return (f"GPU utilisation mean {statistics.mean(self.samples):.0f}% max "
                f"{max(self.samples):.0f}% ({len(self.samples)} samples)")


def write_posters(folder: Path, n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """`n` synthetic poster JPEGs in `folder` and their random multi-hot labels."""
    import cv2

    from postergenre.data.images import decode_threads
    from postergenre.genres import NUM_GENRES

    width, height = SOURCE_SIZE
    folder.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> str:
        rng = np.random.default_rng([seed, i])
        small = rng.integers(0, 256, (12, 8, 3), dtype=np.uint8)
        image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        path = folder / f"p{i:06d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        return str(path)

    with ThreadPoolExecutor(decode_threads()) as pool:
        paths = list(pool.map(one, range(n)))
    labels = (np.random.default_rng(seed).random((n, NUM_GENRES)) < 0.15).astype("float32")
    return paths, labels


def pipeline(paths: list[str], labels: np.ndarray, size: int, batch: int):
    """Read, decode, resize (float32 RGB in [0, 255], what the models take), batch."""
    import tensorflow as tf

    def load(path, label):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        return tf.image.resize(image, (size, size)), label

    return (tf.data.Dataset.from_tensor_slices((paths, labels))
            .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
            .batch(batch, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE))


def build(kind: str, size: int):
    """A compiled model of the library: the study-size scratch CNN, or the transfer model."""
    import keras

    from postergenre.configs import ScratchConfig, TransferConfig
    from postergenre.training.bases import build_transfer_base
    from postergenre.training.models import build_head, build_scratch_cnn, join_base_and_head

    if kind == "scratch":
        model = build_scratch_cnn(size, ScratchConfig(**STUDY_SCRATCH))
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True)
    else:
        config = TransferConfig()
        base = build_transfer_base(config.backbone, size, weights="none")
        head = build_head(base.output_shape[1:], config.head, config.dense_units,
                          config.dropout, config.l2)
        model = join_base_and_head(base, head)
        optimizer = keras.optimizers.Adam(config.learning_rate)
    model.compile(optimizer=optimizer, loss="binary_crossentropy")
    return model


def input_alone(dataset, steps: int, batch: int, repeats: int) -> Summary:
    """The pipeline iterated for one epoch with no model: the most images per second the
    host can feed at this size (its first pass, untimed, fills the OS's file cache)."""
    for _ in dataset.take(min(WARMUP_STEPS, steps)):
        pass
    return repeat(lambda: sum(1 for _ in dataset), steps * batch, repeats)


def matmul_gflops(device: str, dtype: str, n: int = 4096, repeats: int = 10) -> float:
    """Square matrix products on `device` (a TensorFlow device name) in `dtype`, by wall
    clock: 2 n^3 operations each; reading one sum back waits for all of them."""
    import tensorflow as tf

    with tf.device(device):
        a = tf.random.uniform((n, n), dtype=tf.float32)
        a = tf.cast(a, dtype)
        float(tf.reduce_sum(tf.cast(a @ a, tf.float32)))  # warm-up
        run = repeat(lambda: float(tf.reduce_sum(tf.cast(
            tf.add_n([a @ a for _ in range(repeats)]), tf.float32))), repeats, 3)
    return 2 * n**3 * run.items / run.wall_s / 1e9


def measure_model(kind: str, size: int, dataset, steps: int, batch: int, repeats: int,
                  gpu: bool) -> tuple[Summary, str, str]:
    """(timed epochs, utilisation, peak memory) of one model at one size."""
    import keras
    import tensorflow as tf

    keras.backend.clear_session()
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    model = build(kind, size)
    model.fit(dataset.take(min(WARMUP_STEPS, steps)), epochs=1, verbose=0, shuffle=False)
    with GpuSampler() as sampler:
        summary = repeat(lambda: model.fit(dataset, epochs=1, verbose=0, shuffle=False),
                         steps * batch, repeats)
    if not gpu:
        return summary, "GPU utilisation n/a (CPU run)", "peak GPU memory n/a"
    peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return summary, sampler.describe(), f"peak GPU memory {peak:,.0f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posters", type=int, default=36_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per model")
    parser.add_argument("--precision", default="float32",
                        choices=("float32", "mixed_float16", "mixed_bfloat16"))
    parser.add_argument("--device", default="gpu", choices=("gpu", "cpu"))
    args = parser.parse_args()
    if min(args.sizes) < 32 or max(args.sizes) > min(SOURCE_SIZE):
        parser.error(f"--sizes must be within 32..{min(SOURCE_SIZE)}")
    if args.posters < args.batch:
        parser.error("--posters must be at least --batch")

    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if args.device == "gpu" and not gpus:
        print(NO_GPU)
        return 0
    if args.device == "cpu":
        tf.config.set_visible_devices([], "GPU")
    keras.mixed_precision.set_global_policy(args.precision)
    gpu = args.device == "gpu"
    where = (", ".join(tf.config.experimental.get_device_details(g).get("device_name", g.name)
                       for g in gpus) if gpu else "CPU")
    print(load_line("start"), flush=True)
    print(f"device: {where}; {args.posters:,} posters, batch {args.batch}, "
          f"{args.precision}, {args.repeats} timed epochs per model", flush=True)

    figures: dict[tuple[str, int], Summary] = {}
    feed: dict[int, Summary] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths, labels = write_posters(Path(tmp) / "posters", args.posters)
        steps = args.posters // args.batch
        for size in args.sizes:
            dataset = pipeline(paths, labels, size, args.batch)
            feed[size] = input_alone(dataset, steps, args.batch, args.repeats)
            print(f"input pipeline alone {size} px: {feed[size].describe('image')}", flush=True)
            for kind in ("scratch", "transfer"):
                summary, utilisation, memory = measure_model(
                    kind, size, dataset, steps, args.batch, args.repeats, gpu)
                figures[kind, size] = summary
                print(f"{kind} {size} px: {summary.describe('image')}; {utilisation}; "
                      f"{memory}", flush=True)
    compute = keras.mixed_precision.global_policy().compute_dtype
    side = 4096 if gpu else 1024  # a CPU: the size bench/measure.py's GEMM rate uses
    matmul = matmul_gflops("/GPU:0" if gpu else "/CPU:0", compute, side)
    print(load_line("end"))
    first, rest = args.sizes[0], args.sizes[1:]
    scratch, transfer = figures["scratch", first], figures["transfer", first]
    others = "".join(f"; {size} px: scratch {figures['scratch', size].rate:.0f}, transfer "
                     f"{figures['transfer', size].rate:.0f} img/s" for size in rest)
    closing_lines(
        "gpu",
        "input pipeline alone " + ", ".join(
            f"{feed[size].rate:.0f} img/s at {size} px ({feed[size].cpu_us_per_item:.0f} us "
            f"host CPU per image)" for size in args.sizes)
        + f", {os.cpu_count()} host CPUs; matmul {matmul:,.0f} GFLOP/s on {where} "
        f"({compute}, {side} x {side}, wall clock)",
        f"{scratch.rate:.0f} img/s scratch CNN at {first} px ({scratch.cpu_us_per_item:.0f} "
        f"us host CPU per image, median epoch wall {scratch.wall_s:.2f} s); transfer "
        f"{transfer.rate:.0f} img/s ({transfer.cpu_us_per_item:.0f} us host CPU per image); "
        f"{where}, {args.precision}{others}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
