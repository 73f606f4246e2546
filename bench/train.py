"""Training throughput: this project's trainers against the study's way, in one run.

Scratch CNN (the implementation's speed). Both sides train the same model from the same
initial weights with the same optimiser, loss, AUC metric and callbacks
(postergenre.training.loop's `compile_model` and `fit`: the progress bar, early stopping,
the plateau schedule and the per-epoch checkpoint of weights and optimizer state), on the
same training posters, with validation every epoch. What differs is the input, the
execution and the precision:

- the study's: every poster decoded beforehand (not timed) into one in-memory float32
  array, `model.fit(x, y)`, one batch per call into TensorFlow, float32 throughout (as
  the study trained);
- ours (`train_scratch`'s pipeline): the TFRecord shards decoded in the first epoch
  (timed) and kept as uint8 (`cached_images`), shuffled each epoch, `steps_per_execution`
  batches per call, in the precision `--mixed-precision` gives (auto: what the trainer
  picks for this machine, bfloat16 on a CPU with AMX units, else float32);
- where that precision is not float32, ours runs a third time in float32 ("ours
  float32"): the share of the gain that is the precision, and the share that is not.

Transfer (VGG16, flatten head): ours computes the frozen base's features once and trains
the head on them; the study recomputes the base on every image in every epoch. Both run
in ours' precision. Their ratio would be about the number of epochs (the base runs once
instead of once per epoch), a choice of the benchmark, not a speed: the VGG16 line gives
each side's CPU per image and epoch, and the result line leaves it out.

Each figure is the median of `--repeats` runs (sides interleaved), with the CPU time per
image (every thread of this process) beside the wall time, and the load average at the
start and the end: on a shared machine the wall time swings, the CPU time much less.

    .venv/bin/python bench/train.py [--posters 3400] [--size 64] [--batch 32] [--epochs 3]
        [--repeats 3] [--steps-per-execution 8] [--mixed-precision auto] [--transfer-repeats 3]

The last two lines (bench/measure.py's `closing_lines`):

    ceiling: float32 GEMM G GFLOP per CPU-second; the scratch CNN's training step ... at
    least F us CPU per image at that rate ...
    train: R x the study's speed by CPU per image, scratch CNN (ours X us vs study Y us CPU
    per image; wall ... img/s), ours in P, the study's float32; ...

R is the study's CPU per training image over ours (above 1: ours does the same training
with less CPU). It holds for this CPU and precision only: bfloat16 pays on a CPU with AMX
units, and in float32 the two sides do the same work (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from measure import (  # noqa: E402
    MIN_REPEATS,
    closing_lines,
    forward_flops,
    gemm_gflops_per_cpu_second,
    interleaved,
    load_line,
)

from postergenre.configs import (  # noqa: E402
    AugmentConfig,
    DemoSourceConfig,
    ScratchConfig,
    TransferConfig,
)
from postergenre.data.augment import augment_and_shard  # noqa: E402
from postergenre.data.images import read_rgb, resize  # noqa: E402
from postergenre.data.labels import read_labels  # noqa: E402
from postergenre.data.shards import read_manifest  # noqa: E402
from postergenre.data.split import split_dataset  # noqa: E402
from postergenre.genres import encode_many  # noqa: E402
from postergenre.sources.demo import generate_demo  # noqa: E402
from postergenre.training.bases import build_transfer_base  # noqa: E402
from postergenre.training.checkpoint import Checkpoint  # noqa: E402
from postergenre.training.device import (  # noqa: E402
    precision_policy,
    seed_everything,
    training_device,
)
from postergenre.training.inputs import augmented, cached_images  # noqa: E402
from postergenre.training.loop import compile_model, fit  # noqa: E402
from postergenre.training.models import (  # noqa: E402
    build_dense_head,
    build_scratch_cnn,
    join_base_and_head,
)
from postergenre.training.transfer import train_transfer  # noqa: E402
from postergenre.validation.validate import validate_dataset  # noqa: E402

SCRATCH = {"conv1_filters": 16, "conv2_filters": 32, "dense_units": 128}
HEAD_UNITS = 256


def study_arrays(data: Path, split_dir: Path, split: str, size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The study's loader: a serial OpenCV loop into one float32 array."""
    table = read_labels(split_dir / f"{split}.csv")
    images = np.stack([resize(read_rgb(data / p), size) for p in table["poster"]])
    return images.astype("float32"), encode_many(table["genres"]).astype("float32")


def scratch_run(side: str, config: ScratchConfig, prepared: Path, arrays: dict,
                weights: list, folder: Path, size: int) -> None:
    """One training of the scratch CNN, `side` "ours" or "study", from `weights`, in
    `config.mixed_precision` (the study's side: float32 whatever the config says)."""
    manifest = read_manifest(prepared)
    records = len(arrays["train"][0])
    steps = -(-records // config.batch_size)
    precision = config.mixed_precision if side == "ours" else "off"
    with training_device(mixed_precision=precision):
        model = build_scratch_cnn(size, config)
        model.set_weights(weights)
        checkpoint = Checkpoint(folder / f"{side}.checkpoint", {"side": side})
        if side == "ours":
            compile_model(model, manifest, config, config.learning_rate, steps,
                          config.epochs, config.clipnorm)
            train = augmented(cached_images(prepared, "train", config.batch_size, size,
                                            shuffle=True, seed=0), config.augment, 0)
            fit(model, train, cached_images(prepared, "validation", config.batch_size, size),
                config, name="ours", checkpoint=checkpoint)
        else:
            compile_model(model, manifest, config, config.learning_rate, steps,
                          config.epochs, config.clipnorm, steps_per_execution=1)
            x, y = arrays["train"]
            fit(model, x, arrays["validation"], config, name="study", checkpoint=checkpoint,
                y=y, batch_size=config.batch_size, shuffle=True)
    checkpoint.remove()


def transfer_study(config: TransferConfig, arrays: dict, size: int) -> None:
    """The study's transfer training: the frozen base run on every image, every epoch."""
    with training_device(mixed_precision=config.mixed_precision):
        base = build_transfer_base("vgg16", size, "none")
        model = join_base_and_head(base, build_dense_head(base.output_shape[1:], HEAD_UNITS))
        compile_model(model, {"class_weights": [1.0] * 19}, config, config.learning_rate,
                      1, config.epochs, steps_per_execution=1)
        fit(model, arrays["train"][0], arrays["validation"], config, name="study",
            y=arrays["train"][1], batch_size=config.batch_size, shuffle=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posters", type=int, default=3400,
                        help="generated posters (3400: over 2,000 of them in training)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    parser.add_argument("--transfer-repeats", type=int, default=MIN_REPEATS,
                        help="0: skip the transfer comparison")
    parser.add_argument("--steps-per-execution", type=int, default=8)
    parser.add_argument("--mixed-precision", default="auto",
                        choices=("auto", "off", "float16", "bfloat16"),
                        help="ours' precision (auto: the trainer's choice for this machine); "
                        "the study's side trains in float32")
    args = parser.parse_args()
    print(load_line("start"))
    seed_everything(0, deterministic=False)  # the speed setting, on both sides
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        generate_demo(work / "data", DemoSourceConfig(n_posters=args.posters, seed=0))
        validate_dataset(work / "data", work / "validated")
        split_dataset(work / "validated" / "labels.csv", work / "split")
        # No augmentation on disk: both ways train on exactly the same training posters.
        augment_and_shard(work / "data", work / "split", work / "prepared",
                          AugmentConfig(max_upsample=1.0, image_size=args.size))
        arrays = {split: study_arrays(work / "data", work / "split", split, args.size)
                  for split in ("train", "validation")}
        n = len(arrays["train"][0])
        common = {"epochs": args.epochs, "batch_size": args.batch, "lr_patience": 100,
                  "stop_patience": 100, "steps_per_execution": args.steps_per_execution,
                  "mixed_precision": args.mixed_precision}

        scratch = ScratchConfig(**SCRATCH, **common)
        keras.utils.set_random_seed(0)
        model = build_scratch_cnn(args.size, scratch)
        weights, step_flops = model.get_weights(), 3 * forward_flops(model)
        policy = precision_policy(args.mixed_precision, tf.config.list_physical_devices("GPU"))
        configs = {"ours": scratch, "study": scratch}
        if policy != "float32":  # the precision's share of the gain
            configs["ours float32"] = ScratchConfig(**SCRATCH, **{**common,
                                                                  "mixed_precision": "off"})
        cnn = interleaved({side: (lambda side=side: scratch_run(
            side.split()[0], configs[side], work / "prepared", arrays, weights, work,
            args.size)) for side in configs}, args.repeats, n * args.epochs)

        # The study's head and optimiser on both sides (the default is the gap head, Adam).
        transfer = TransferConfig(weights="none", head="flatten", optimizer="sgd",
                                  dense_units=HEAD_UNITS, **common)
        counter = iter(range(10**6))
        # --transfer-repeats 0: the scratch CNN alone (the transfer study side is slow).
        vgg = {} if not args.transfer_repeats else interleaved({
            "ours": lambda: train_transfer(work / "prepared", work / f"vgg{next(counter)}",
                                           transfer),
            "study": lambda: transfer_study(transfer, arrays, args.size)},
            args.transfer_repeats, n * args.epochs)

    print(f"setting: {args.posters} generated posters, {n} training posters (+"
          f"{len(arrays['validation'][0])} validation each epoch), {args.size}x{args.size} "
          f"px, batch {args.batch}, {args.epochs} epochs, ours' precision {policy} "
          f"(--mixed-precision {args.mixed_precision}), the study's float32, "
          f"CPU ({os.cpu_count()} cores); both sides: AUC metric, progress, early stopping, "
          f"plateau schedule, per-epoch checkpoint")
    print(f"scratch CNN ours  (shards decoded in epoch 1 and cached, steps_per_execution "
          f"{args.steps_per_execution}, {policy}): {cnn['ours'].describe('image')}")
    if "ours float32" in cnn:
        print(f"scratch CNN ours float32 (the same, in float32): "
              f"{cnn['ours float32'].describe('image')}")
    print(f"scratch CNN study (in-memory float32 model.fit, decoded beforehand, untimed): "
          f"{cnn['study'].describe('image')}")
    if vgg:
        per_epoch = {side: vgg[side].cpu_us_per_item for side in vgg}  # items: n x epochs
        print(f"VGG16 head ours  (features computed once, whole trainer with its outputs): "
              f"{vgg['ours'].describe('image')}")
        print(f"VGG16 head study (frozen base recomputed every epoch): "
              f"{vgg['study'].describe('image')}")
        print(f"VGG16 head, CPU per image and epoch over {args.epochs} epochs: ours "
              f"{per_epoch['ours']:.0f} us (the base once, then the head alone), study "
              f"{per_epoch['study']:.0f} us (the base every epoch); their ratio grows with "
              "the epochs (the feature cache), it is no measure of speed")
    print(load_line("end"))
    gemm = gemm_gflops_per_cpu_second()
    floor_us = 1e6 * step_flops / (gemm * 1e9)
    ours, study = cnn["ours"], cnn["study"]
    float32_part = (f"; ours in float32 {cnn['ours float32'].cpu_us_per_item:.0f} us CPU "
                    f"per image" if "ours float32" in cnn else "")
    closing_lines(
        "train",
        f"float32 GEMM {gemm:.0f} GFLOP per CPU-second (one thread) on this CPU "
        f"({os.cpu_count()} CPUs); "
        f"the scratch CNN's training step at {args.size} px is about "
        f"{step_flops / 1e6:.0f} MFLOP per image (3 x its forward pass's convolutions and "
        f"dense layers), at least {floor_us:.0f} us CPU per image at that rate (ours "
        f"{ours.cpu_us_per_item:.0f} us, study {study.cpu_us_per_item:.0f} us)",
        f"{study.cpu_us_per_item / ours.cpu_us_per_item:.2f}x the study's speed by CPU per "
        f"image, scratch CNN (ours {ours.cpu_us_per_item:.0f} us vs study "
        f"{study.cpu_us_per_item:.0f} us CPU per image; wall {ours.rate:.0f} vs "
        f"{study.rate:.0f} img/s), ours in {policy}, the study's float32{float32_part}")


if __name__ == "__main__":
    main()
