"""The Keras fit loop the trainers share, and its per-epoch checkpoint.

Keras trainers use SGD (Nesterov), Adam or AdamW on a binary cross-entropy (per-label
positive weights with `use_class_weights`), a plateau or cosine schedule, stop early and
keep the best epoch by validation loss; `steps_per_execution` runs several batches per
call into TensorFlow. Every finished epoch is checkpointed (weights, optimizer state,
best epoch, early-stopping and schedule counters, history) to `<model folder>.checkpoint`
or the `checkpoint_dir` given (postergenre.training.checkpoint); a rerun with the same
settings and data resumes after that epoch.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from postergenre.configs import ScratchConfig, TrainingConfig, TransferConfig
from postergenre.genres import GENRES
from postergenre.progress import Progress
from postergenre.training.checkpoint import Checkpoint, data_fingerprint, default_checkpoint_dir
from postergenre.training.device import Device
from postergenre.training.live import LiveLog
from postergenre.training.models import WeightedBinaryCrossentropy
from postergenre.typed_config import to_mapping

log = logging.getLogger(__name__)


def _optimizer(config: TrainingConfig, learning_rate: float, steps: int, epochs: int,
               clipnorm: float = 0.0) -> keras.optimizers.Optimizer:
    """The config's optimiser at `learning_rate`; with `schedule: cosine`, decaying to
    `min_lr` over `epochs` epochs of `steps` batches."""
    rate: float | keras.optimizers.schedules.LearningRateSchedule = learning_rate
    if config.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=max(steps * epochs, 1),
            alpha=min(config.min_lr / learning_rate, 1.0))
    # Clipping each gradient's norm keeps one large step from killing the ReLUs of a
    # network without batch normalisation (the study's CNN at a high learning rate).
    clip = {"clipnorm": clipnorm} if clipnorm > 0 else {}
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=rate, **clip)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=rate, weight_decay=config.weight_decay,
                                      **clip)
    return keras.optimizers.SGD(learning_rate=rate, momentum=config.momentum, nesterov=True,
                                **clip)


def compile_model(model: keras.Model, manifest: dict, config: TrainingConfig,
                  learning_rate: float, steps: int, epochs: int, clipnorm: float = 0.0,
                  steps_per_execution: int | None = None) -> None:
    """Compile with the config's optimiser and schedule, the weighted loss and the AUC
    metric; `steps_per_execution` (default the config's) batches per TensorFlow call."""
    weights = manifest["class_weights"] if config.use_class_weights else [1.0] * len(GENRES)
    model.compile(
        optimizer=_optimizer(config, learning_rate, steps, epochs, clipnorm),
        loss=WeightedBinaryCrossentropy(weights),
        metrics=[keras.metrics.AUC(multi_label=True, num_labels=len(GENRES), name="auc")],
        steps_per_execution=steps_per_execution or config.steps_per_execution,
    )


class EpochProgress(keras.callbacks.Callback):
    """The epochs' progress (postergenre.progress): a bar on a terminal, one line per
    epoch when piped (epoch, loss, val_loss, val_auc, seconds). Keras' own per-epoch
    lines would flood `make run`'s output."""

    def __init__(self, epochs: int, name: str, done: int = 0) -> None:
        super().__init__()
        self.progress = Progress(f"train {name}", epochs, "epoch", initial=done,
                                 every_step=True)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.progress.update(1, {k: f"{float(logs[k]):.4f}"
                                 for k in ("loss", "val_loss", "val_auc") if k in logs})

    def on_train_end(self, logs: dict | None = None) -> None:
        self.progress.close()


class KeepBestAndCheckpoint(keras.callbacks.Callback):
    """Keep the best epoch's weights (lowest val_loss, strictly below `to_beat` when
    given) in memory and, with a `Checkpoint`, save every finished epoch: the last
    weights with the optimizer's state, the best weights, the history so far and the
    counters of early stopping and the plateau schedule, so a rerun resumes exactly there
    (see postergenre.training.checkpoint). Placed after those callbacks, it sees their state after
    the epoch."""

    def __init__(self, stage: str, phase: str, first_epoch: int, to_beat: float | None,
                 checkpoint: Checkpoint | None, earlier: list[dict],
                 early_stopping: keras.callbacks.EarlyStopping,
                 plateau: keras.callbacks.ReduceLROnPlateau | None) -> None:
        super().__init__()
        self.stage, self.phase, self.first_epoch = stage, phase, first_epoch
        self.checkpoint, self.earlier = checkpoint, list(earlier)
        self.early_stopping, self.plateau = early_stopping, plateau
        self.best_loss = math.inf if to_beat is None else float(to_beat)
        self.best_weights: list[np.ndarray] | None = None
        self.best_file: str | None = None
        self.entries: list[dict] = []
        self.done = 0
        self.finished = False
        self._restored: dict | None = None

    # --- resume -------------------------------------------------------------------

    def restore(self, state: dict) -> None:
        """Load a checkpoint state of this stage into the model and this callback."""
        assert self.checkpoint is not None  # restored only from a checkpoint
        folder = self.checkpoint.folder
        self.entries = [e for e in state["history"] if e.get("stage") == self.stage]
        self.done, self.finished = int(state["epochs_done"]), bool(state["finished"])
        self.best_loss = float(state["best_val_loss"])
        self.best_file = state.get("best_file")
        # The optimizer's variables exist only once built; load_weights skips them else.
        self.model.optimizer.build(self.model.trainable_variables)
        if self.best_file:
            with np.load(folder / self.best_file, allow_pickle=False) as saved:
                self.best_weights = [saved[f"w{i}"] for i in range(len(saved.files))]
        self.model.load_weights(folder / state["last_file"])
        self._restored = state.get("callbacks", {})

    def on_train_begin(self, logs: dict | None = None) -> None:
        # The other callbacks reset their counters in their own on_train_begin, called
        # before this one: put back the checkpoint's.
        if self._restored is not None:
            for attr, value in self._restored.get("early_stopping", {}).items():
                setattr(self.early_stopping, attr, value)
            if self.plateau is not None:
                for attr, value in self._restored.get("plateau", {}).items():
                    setattr(self.plateau, attr, value)
        elif self._restored is None and math.isfinite(self.best_loss):
            # An epoch must beat `to_beat`: until one does, the incoming weights stay.
            self.best_weights = self.model.get_weights()
            self._save(best=True, epoch=0)

    # --- each epoch ---------------------------------------------------------------

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        entry: dict[str, Any] = {"epoch": self.first_epoch + epoch,
                                 **{k: float(v) for k, v in logs.items()}}
        if self.phase:
            entry["phase"] = self.phase
        self.entries.append(entry)
        self.done = epoch + 1
        self.finished = bool(self.model.stop_training) or self.done >= self.params["epochs"]
        current = logs.get("val_loss")
        improved = current is not None and float(current) < self.best_loss
        if current is not None and improved:
            self.best_loss = float(current)
            self.best_weights = self.model.get_weights()
        self._save(best=improved, epoch=self.done)

    def _save(self, best: bool, epoch: int) -> None:
        if self.checkpoint is None:
            return
        if best:
            self.best_file = f"{self.stage}-best-e{epoch:04d}.npz"
            with open(self.checkpoint.new_file(self.best_file), "wb") as handle:
                weights = {f"w{i}": w for i, w in enumerate(self.best_weights or [])}
                np.savez(handle, **weights)  # type: ignore[arg-type]
        last = f"{self.stage}-last-e{epoch:04d}.weights.h5"
        self.model.save_weights(self.checkpoint.new_file(last))
        callbacks = {"early_stopping": _counters(self.early_stopping, "wait", "best")}
        if self.plateau is not None:
            callbacks["plateau"] = _counters(self.plateau, "wait", "best", "cooldown_counter")
        self.checkpoint.commit({
            "stage": self.stage, "epochs_done": epoch, "finished": self.finished,
            "history": self.earlier + [{**e, "stage": self.stage} for e in self.entries],
            "best_val_loss": self.best_loss, "best_file": self.best_file,
            "last_file": last, "callbacks": callbacks,
            "files": [name for name in (last, self.best_file) if name],
        })


class LiveEpochs(keras.callbacks.Callback):
    """Each finished epoch into the run's DVCLive folder (training.live), as the history
    records it: placed after `KeepBestAndCheckpoint`, whose entry it logs, so the live
    folder never runs ahead of the checkpoint."""

    def __init__(self, live: LiveLog, keeper: KeepBestAndCheckpoint) -> None:
        super().__init__()
        self.live, self.keeper = live, keeper

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.live.epoch(self.keeper.entries[-1])


def _counters(callback: keras.callbacks.Callback, *attrs: str) -> dict:
    """A callback's counters as JSON numbers (None stays None)."""
    values = {}
    for attr in attrs:
        value = getattr(callback, attr, None)
        values[attr] = None if value is None else float(value)
    if "wait" in values and values["wait"] is not None:
        values["wait"] = int(values["wait"])
    if "cooldown_counter" in values and values["cooldown_counter"] is not None:
        values["cooldown_counter"] = int(values["cooldown_counter"])
    return values


def fit(model: keras.Model, train: tf.data.Dataset | np.ndarray,
        validation: tf.data.Dataset | tuple[np.ndarray, np.ndarray],
        config: ScratchConfig | TransferConfig, epochs: int | None = None, name: str = "",
        phase: str = "", first_epoch: int = 1, to_beat: float | None = None,
        checkpoint: Checkpoint | None = None, stage: str = "fit",
        earlier: list[dict] | None = None, live: LiveLog | None = None,
        **fit_args: Any) -> list[dict]:
    """Fit with early stopping on the validation loss; leave the best epoch's weights in
    `model`, and return one dict per epoch (numbered from `first_epoch`).

    `epochs` overrides `config.epochs` (the fine-tuning phase). With `to_beat` (the best
    validation loss so far), an epoch is kept only if it beats it: when none does, the
    model keeps the weights it came in with. With `checkpoint`, every finished epoch is
    saved under `stage` (with `earlier`, the history of the phases before) and a loaded
    checkpoint of this stage is resumed: its finished epochs are not trained again.
    With `live`, each finished epoch is logged there as it ends (training.live).
    `fit_args` go to `model.fit` as they are (bench/train.py gives it the study's
    in-memory arrays this way, with the same callbacks).
    """
    epochs = epochs or config.epochs
    # A dataset shuffles itself (cached_images) or keeps its order; Keras' `shuffle`
    # (default on) is for arrays, and with a dataset it only warns.
    fit_args.setdefault("shuffle", not isinstance(train, tf.data.Dataset))
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.stop_patience, baseline=to_beat)
    plateau = None
    if config.schedule == "plateau":
        plateau = keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=config.lr_factor, patience=config.lr_patience,
            min_lr=config.min_lr)
    keeper = KeepBestAndCheckpoint(stage, phase, first_epoch, to_beat, checkpoint,
                                   earlier or [], early_stopping, plateau)
    keeper.set_model(model)
    state = checkpoint.state if checkpoint is not None else None
    if state is not None and state.get("stage") == stage:
        keeper.restore(state)
    if not keeper.finished:
        model.fit(
            train,
            validation_data=validation,
            epochs=epochs,
            initial_epoch=keeper.done,
            verbose=0,
            # In this order: the counters first, then the checkpoint, the live folder and
            # the progress line, so a line printed means an epoch saved.
            callbacks=[early_stopping, *([plateau] if plateau else []), keeper,
                       *([LiveEpochs(live, keeper)] if live else []),
                       EpochProgress(epochs, name or model.name, keeper.done)],
            **fit_args,
        )
    if keeper.best_weights is not None:
        model.set_weights(keeper.best_weights)
    return [{k: v for k, v in e.items() if k != "stage"} for e in keeper.entries]


def open_checkpoint(kind: str, name: str, config: TrainingConfig,
                    prepared_dir: str | os.PathLike[str], model_dir: Path,
                    checkpoint_dir: str | os.PathLike[str] | None,
                    device: Device, global_batch: int) -> Checkpoint:
    """The run's checkpoint (`checkpoint_dir`, else `<model_dir>.checkpoint`), loaded
    when it was made by a run with the same settings, data and device layout."""
    parts = {"kind": kind, "model": name, "params": to_mapping(config),
             "data": data_fingerprint(prepared_dir), "replicas": device.replicas,
             "precision": device.precision, "batch": global_batch,
             "keras": keras.__version__}
    local = default_checkpoint_dir(model_dir)
    checkpoint = Checkpoint(local if checkpoint_dir is None else checkpoint_dir, parts,
                            local_dir=local)
    state = checkpoint.load()
    if state is not None:
        log.info("%s: resuming from the checkpoint %s after epoch %d (%s, %d epochs "
                 "done)", name, checkpoint.where, len(state["history"]), state["stage"],
                 state["epochs_done"])
    return checkpoint


def finished_epochs(checkpoint: Checkpoint, stage: str | None = None) -> int:
    """Epochs the loaded checkpoint holds: all of them, or those of `stage`."""
    state = checkpoint.state
    if state is None:
        return 0
    if stage is None:
        return len(state["history"])
    return int(state["epochs_done"]) if state["stage"] == stage else 0


def tagged(history: list[dict], stage: str) -> list[dict]:
    return [{**entry, "stage": stage} for entry in history]
