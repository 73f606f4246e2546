"""The `transfer` trainer: a head on a frozen pretrained base (a backbone of
training.backbones), then optionally the base's last block fine-tuned with it.

The head (`gap` by default; the study's `flatten`) trains on the base's features,
computed once; `fine_tune_epochs` then trains the base's last block with it, on the
frozen trunk's features, also computed once.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from postergenre.atomic import atomic_folder
from postergenre.configs import TransferConfig
from postergenre.data.shards import labels_of, read_manifest
from postergenre.training.backbones import backbone
from postergenre.training.bases import build_transfer_base, split_at_last_block
from postergenre.training.device import per_replica_batch, seed_everything, training_device
from postergenre.training.features import (
    FEATURES_DIR,
    feature_batches,
    split_features,
    write_features,
)
from postergenre.training.inputs import input_size
from postergenre.training.live import LiveLog
from postergenre.training.loop import (
    compile_model,
    finished_epochs,
    fit,
    open_checkpoint,
    tagged,
)
from postergenre.training.models import build_head, head_parts, join_base_and_head
from postergenre.training.outputs import throughput, write_outputs
from postergenre.typed_config import to_mapping

log = logging.getLogger(__name__)


def _unfreeze(layers_: list[keras.layers.Layer]) -> None:
    """Make layers trainable, batch normalisation excepted (it keeps its ImageNet
    statistics and runs in inference mode: a few thousand posters would only blur them)."""
    for layer in layers_:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)


def train_transfer(prepared_dir: str | os.PathLike[str], model_dir: str | os.PathLike[str],
                   config: TransferConfig, name: str = "transfer",
                   data_version: str = "",
                   checkpoint_dir: str | os.PathLike[str] | None = None,
                   live_dir: str | os.PathLike[str] | None = None) -> dict:
    """Train a head on a frozen pretrained base (`backbone`), then optionally
    fine-tune the base's last block with it.

    The base is frozen and the training posters are already augmented on disk, so its
    output for a poster never changes: compute it once and train the head on it (exactly
    what training through the frozen base would do, at the head's cost). Only the pooled
    vector is kept for the `gap` head (its pooling has no weights). With
    `fine_tune_epochs`, the cache is the frozen trunk's output instead (the base cut
    before its last block): the head's features are the last block's output on it, and
    fine-tuning trains that block and the head on the same cache, keeping a fine-tuned
    epoch only if its validation loss beats the head's best.

    Output folder and checkpoint as `train_scratch`: both phases are checkpointed, and a
    rerun resumes in the phase and after the epoch the checkpoint holds (the features
    are computed again, the finished epochs are not); `live_dir` as `train_scratch`'s,
    both phases' epochs in one DVCLive folder.
    """
    seed_everything(config.seed, config.deterministic)
    manifest = read_manifest(prepared_dir)
    size = input_size(config, manifest)
    model_dir = Path(model_dir)
    train_y, _ = labels_of(prepared_dir, "train")
    val_y, _ = labels_of(prepared_dir, "validation")
    labels = {"train": train_y, "validation": val_y}
    with atomic_folder(model_dir) as work:
        with training_device(config.require_gpu, config.mixed_precision,
                             backbone(config.backbone).dense_convolutions) as device:
            global_batch = per_replica_batch(config.batch_size, device) * device.replicas
            log.info("%s: %s on %s, %d px, batch %d", name, config.describe(), device.kind,
                     size, global_batch)
            checkpoint = open_checkpoint("transfer", name, config, prepared_dir, model_dir,
                                         checkpoint_dir, device, global_batch)
            resumed = finished_epochs(checkpoint)
            live = LiveLog.open(live_dir, checkpoint.state["history"]
                                   if checkpoint.state else [])
            steps = math.ceil(len(train_y) / global_batch)
            base = build_transfer_base(config.backbone, size, config.weights)
            head = build_head(base.output_shape[1:], config.head, config.dense_units,
                              config.dropout, config.l2)
            pool, classifier = head_parts(head)
            cache = work / FEATURES_DIR
            cache.mkdir()
            started = time.perf_counter()
            tuning = config.fine_tune_epochs > 0
            if tuning:
                trunk, tail = split_at_last_block(base, config.backbone)
                cached = {split: split_features(trunk, prepared_dir, split, global_batch,
                                                size, len(y), cache)
                          for split, y in labels.items()}
                pooled = keras.Model(tail.inputs, pool(tail.outputs[0]), name="pooled")
                vectors = {split: write_features(
                               pooled, feature_batches(cached[split], y, global_batch)
                               .map(lambda x, _: x), len(y), cache / f"pooled-{split}.npy")
                           for split, y in labels.items()}
            else:
                pooled = keras.Model(base.inputs, pool(base.outputs[0]), name="pooled")
                vectors = {split: split_features(pooled, prepared_dir, split, global_batch,
                                                 size, len(y), cache)
                           for split, y in labels.items()}
            features_seconds = time.perf_counter() - started
            state = checkpoint.state
            if state is not None and state["stage"] == "fine_tune":
                # The head's phase had ended: its epochs are history, its weights are in
                # the fine-tuning checkpoint.
                history = [{k: v for k, v in e.items() if k != "stage"}
                           for e in state["history"] if e["stage"] == "head"]
            else:
                compile_model(classifier, manifest, config, config.learning_rate, steps,
                              config.epochs)
                seed = config.seed + finished_epochs(checkpoint, "head")
                history = fit(
                    classifier, feature_batches(vectors["train"], train_y, global_batch, seed),
                    feature_batches(vectors["validation"], val_y, global_batch), config,
                    name=name, phase="head" if tuning else "", checkpoint=checkpoint,
                    stage="head", live=live)
            trainable = int(sum(np.prod(w.shape) for w in classifier.trainable_weights))
            if tuning:
                _unfreeze(tail.layers)
                inputs = keras.Input(tail.input_shape[1:], name="trunk_features")
                tuned = keras.Model(inputs, head(tail(inputs)), name=f"{name}_fine_tune")
                trainable = int(sum(np.prod(w.shape) for w in tuned.trainable_weights))
                compile_model(tuned, manifest, config, config.fine_tune_learning_rate, steps,
                              config.fine_tune_epochs)
                seed = config.seed + finished_epochs(checkpoint, "fine_tune")
                history += fit(
                    tuned, feature_batches(cached["train"], train_y, global_batch, seed),
                    feature_batches(cached["validation"], val_y, global_batch), config,
                    epochs=config.fine_tune_epochs, name=f"{name} fine-tune",
                    phase="fine_tune", first_epoch=len(history) + 1,
                    to_beat=min(e["val_loss"] for e in history), checkpoint=checkpoint,
                    stage="fine_tune", earlier=tagged(history, "head"), live=live)
                del cached
            del vectors
            if live:
                live.end()
            # The cache is not part of the model folder (an error deletes the whole
            # partial folder, the cache with it).
            shutil.rmtree(cache)
            model = join_base_and_head(base, head, name)
            seconds = time.perf_counter() - started
        info = {
            "model": name, "kind": "transfer", "description": config.describe(),
            "backbone": config.backbone, "head": config.head, "image_size": size,
            "parameters": int(model.count_params()), "trainable_parameters": trainable,
            "seconds": round(seconds, 1), "feature_seconds": round(features_seconds, 1),
            **device.describe(),
            "train_images_per_second": throughput(history[resumed:], seconds, len(train_y)),
            "resumed_from_epoch": resumed or None,
            "params": to_mapping(config),
        }
        if tuning:
            kept = min(history, key=lambda e: e["val_loss"])
            info["fine_tune_kept"] = kept.get("phase") == "fine_tune"
        info = write_outputs(model, work, history, info, data_version, manifest,
                             prepared_dir, config.test_time_mirror)
    checkpoint.remove()  # the model is in place: nothing left to resume
    return info
