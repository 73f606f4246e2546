"""The `scratch` trainer: the study's CNN from scratch, streamed from the shards.

With `batch_norm`, Adam and on-the-fly `augment` transforms (random flip / crop /
brightness / contrast of every training poster, each epoch anew), the recipe that learns
on real posters.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

from postergenre.atomic import atomic_folder
from postergenre.configs import ScratchConfig
from postergenre.data.shards import read_manifest
from postergenre.training.device import per_replica_batch, seed_everything, training_device
from postergenre.training.inputs import augmented, cached_images, input_size
from postergenre.training.live import LiveLog
from postergenre.training.loop import compile_model, finished_epochs, fit, open_checkpoint
from postergenre.training.models import build_scratch_cnn
from postergenre.training.outputs import throughput, write_outputs
from postergenre.typed_config import to_mapping

log = logging.getLogger(__name__)


def train_scratch(prepared_dir: str | os.PathLike[str], model_dir: str | os.PathLike[str],
                  config: ScratchConfig, name: str = "scratch_cnn",
                  data_version: str = "",
                  checkpoint_dir: str | os.PathLike[str] | None = None,
                  live_dir: str | os.PathLike[str] | None = None) -> dict:
    """Train the CNN from scratch on the shards in `prepared_dir` (streamed, resized to
    the model's `image_size`, randomly transformed with `augment`).

    The model folder is built in `<model_dir>.partial` and swapped into place when whole;
    every finished epoch is checkpointed to `checkpoint_dir` (default
    `<model_dir>.checkpoint`, or an s3:// URL) and a rerun with the same settings and
    data resumes after it (`resumed_from_epoch` in training.json); the checkpoint is
    deleted once the model is in place. With `live_dir`, each finished epoch is logged
    there for DVCLive's views as it ends (training.live).
    """
    seed_everything(config.seed, config.deterministic)
    manifest = read_manifest(prepared_dir)
    size = input_size(config, manifest)
    records = int(manifest["counts"]["train"]["records"])
    model_dir = Path(model_dir)
    with atomic_folder(model_dir) as work:
        with training_device(config.require_gpu, config.mixed_precision) as device:
            global_batch = per_replica_batch(config.batch_size, device) * device.replicas
            log.info("%s: %s on %s (%d replicas, %s), %d px, %d epochs, batch %d", name,
                     config.describe(), device.kind, device.replicas, device.precision, size,
                     config.epochs, global_batch)
            checkpoint = open_checkpoint("scratch", name, config, prepared_dir, model_dir,
                                         checkpoint_dir, device, global_batch)
            resumed = finished_epochs(checkpoint)
            live = LiveLog.open(live_dir, checkpoint.state["history"]
                                   if checkpoint.state else [])
            model = build_scratch_cnn(size, config, name)
            compile_model(model, manifest, config, config.learning_rate,
                          math.ceil(records / global_batch), config.epochs, config.clipnorm)
            # A resumed run draws its data order and transforms from another seed: the
            # same seed would repeat epoch 1's instead of going on.
            seed = config.seed + resumed
            train = augmented(cached_images(prepared_dir, "train", global_batch, size,
                                            shuffle=True, seed=seed), config.augment, seed)
            started = time.perf_counter()
            history = fit(model, train,
                          cached_images(prepared_dir, "validation", global_batch, size),
                          config, name=name, checkpoint=checkpoint, live=live)
            if live:
                live.end()
            seconds = time.perf_counter() - started
        info = {
            "model": name, "kind": "scratch", "description": config.describe(),
            "image_size": size, "parameters": int(model.count_params()),
            "seconds": round(seconds, 1), **device.describe(), "batch_size": global_batch,
            "train_images_per_second": throughput(history[resumed:], seconds, records),
            "resumed_from_epoch": resumed or None,
            "params": to_mapping(config),
        }
        info = write_outputs(model, work, history, info, data_version, manifest,
                             prepared_dir, config.test_time_mirror)
    checkpoint.remove()  # the model is in place: nothing left to resume
    return info
