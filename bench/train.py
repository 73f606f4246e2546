"""Training throughput: this project's trainers against the study's way, in one run.

The study's way: every poster decoded into one in-memory float32 array, `model.fit` on
it, and for the transfer model the frozen VGG16 base recomputed on every image in every
epoch. Ours: streamed TFRecord shards for the CNN; for the transfer model the frozen
base's features computed once, then the head trained on them.

    .venv/bin/python bench/train.py [--posters 600] [--size 64] [--batch 32] [--epochs 10]

Prints training images per second (images x epochs / wall time of training) for both
models and both ways; the last line holds the ratios.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from postergenre.augment import augment_and_shard  # noqa: E402
from postergenre.configs import (  # noqa: E402
    AugmentConfig,
    DemoSourceConfig,
    ScratchConfig,
    TransferConfig,
)
from postergenre.genres import encode_many  # noqa: E402
from postergenre.images import read_rgb, resize  # noqa: E402
from postergenre.labels import read_labels  # noqa: E402
from postergenre.models import (  # noqa: E402
    WeightedBinaryCrossentropy,
    build_dense_head,
    build_scratch_cnn,
    build_transfer_base,
    join_base_and_head,
)
from postergenre.sources.demo import generate_demo  # noqa: E402
from postergenre.split import split_dataset  # noqa: E402
from postergenre.train import train_scratch, train_transfer  # noqa: E402
from postergenre.validate import validate_dataset  # noqa: E402

SCRATCH = {"conv1_filters": 16, "conv2_filters": 32, "dense_units": 128}
HEAD_UNITS = 256


def study_arrays(data: Path, split_dir: Path, split: str, size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The study's loader: a serial OpenCV loop into one float32 array."""
    table = read_labels(split_dir / f"{split}.csv")
    images = np.stack([resize(read_rgb(data / p), size) for p in table["poster"]])
    return images.astype("float32"), encode_many(table["genres"]).astype("float32")


def timed_fit(model: keras.Model, train: tuple, validation: tuple, batch: int,
              epochs: int) -> float:
    """Training images per second of `model.fit` on in-memory arrays (with validation,
    as the study and our trainers both run it)."""
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                  WeightedBinaryCrossentropy([1.0] * 19))
    started = time.perf_counter()
    model.fit(*train, validation_data=validation, batch_size=batch, epochs=epochs, verbose=0)
    return len(train[0]) * epochs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posters", type=int, default=600)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        generate_demo(work / "data", DemoSourceConfig(n_posters=args.posters, seed=0))
        validate_dataset(work / "data", work / "validated")
        split_dataset(work / "validated" / "labels.csv", work / "split")
        # No augmentation: both ways then train on exactly the same training posters.
        augment_and_shard(work / "data", work / "split", work / "prepared",
                          AugmentConfig(max_upsample=1.0, image_size=args.size))
        train = study_arrays(work / "data", work / "split", "train", args.size)
        validation = study_arrays(work / "data", work / "split", "validation", args.size)
        common = {"epochs": args.epochs, "batch_size": args.batch, "lr_patience": 100,
                  "stop_patience": 100}

        scratch = ScratchConfig(**SCRATCH, **common)
        ours_scratch = train_scratch(work / "prepared", work / "scratch",
                                     scratch)["train_images_per_second"]
        keras.utils.set_random_seed(0)
        study_scratch = timed_fit(build_scratch_cnn(args.size, scratch), train, validation,
                                  args.batch, args.epochs)

        # The study's head and optimiser on both sides (the default is the gap head, Adam).
        transfer = TransferConfig(weights="none", head="flatten", optimizer="sgd",
                                  dense_units=HEAD_UNITS, **common)
        ours_vgg = train_transfer(work / "prepared", work / "vgg16",
                                  transfer)["train_images_per_second"]
        base = build_transfer_base("vgg16", args.size, "none")
        study_vgg = timed_fit(join_base_and_head(base, build_dense_head(
            base.output_shape[1:], HEAD_UNITS)), train, validation, args.batch, args.epochs)

    print(f"setting: {len(train[0])} training posters, {args.size}x{args.size} px, "
          f"batch {args.batch}, {args.epochs} epochs, CPU ({os.cpu_count()} cores); "
          f"VGG16 weights none (same cost as imagenet), head {HEAD_UNITS} units")
    print(f"scratch CNN:  ours {ours_scratch:.0f} img/s (TFRecord stream), "
          f"study {study_scratch:.0f} img/s (in-memory float32 model.fit)")
    print(f"VGG16 head:   ours {ours_vgg:.0f} img/s (features cached once), "
          f"study {study_vgg:.0f} img/s (frozen base recomputed every epoch)")
    print(f"train img/s ours/study: scratch {ours_scratch:.0f}/{study_scratch:.0f} = "
          f"{ours_scratch / study_scratch:.2f}x, vgg16 {ours_vgg:.0f}/{study_vgg:.0f} = "
          f"{ours_vgg / study_vgg:.2f}x")


if __name__ == "__main__":
    main()
