"""The training stage: one trainer per model kind (`models` in params.yaml). `train_model`
trains one entry.

- `scratch`: the study's CNN from scratch, streamed from the shards; with `batch_norm`,
  Adam and on-the-fly `augment` transforms (random flip / crop / brightness / contrast of
  every training poster, each epoch anew), the recipe that learns on real posters.
- `transfer`: a head on a frozen pretrained base (VGG16 or EfficientNet-Lite0). The head
  (`gap` by default; the study's `flatten`) trains on the base's features, computed once;
  `fine_tune_epochs` then trains the base's last block with it, on the frozen trunk's
  features, also computed once.
- `linear_probe`: the base's pooled, standardised features and one scikit-learn logistic
  regression per genre, turned into the same Keras model contract.

Keras trainers use SGD (Nesterov), Adam or AdamW on a binary cross-entropy (per-label
positive weights with `use_class_weights`), a plateau or cosine schedule, stop early and
keep the best epoch by validation loss. `image_size` lets a model train at its own size:
the shards are resized in the input pipeline (evaluate does the same). The same code runs
on the CPU and on GPUs: when TensorFlow sees a GPU, training uses a MirroredStrategy over
every visible GPU, with `batch_size` per replica (0: 32 on the CPU, 128 per GPU), and the
`mixed_precision` the device suits (auto: float16 below compute capability 8, bfloat16
from 8; on the CPU bfloat16 where it has AMX units, for the scratch CNN and VGG16 but
not EfficientNet-Lite0, else float32; float32 outputs).
`deterministic` asks for deterministic kernels (same seed, same metrics) at a cost in
speed; `steps_per_execution` runs several batches per call into TensorFlow.

Speed: the CNN's posters are decoded once and kept in memory as uint8 (shuffled, resized
and augmented after the cache, each epoch anew); the transfer models' features are
written to .npy files in the partial model folder and streamed from them batch by batch,
never held as one array nor embedded in the dataset's graph.

Faults: a trainer builds its model folder in `<model folder>.partial` and swaps it into
place whole (postergenre.atomic.atomic_folder), so a kill at any moment leaves the
previous model folder as it was. Keras trainers checkpoint every finished epoch (weights,
optimizer state, best epoch, early-stopping and schedule counters, history) to
`<model folder>.checkpoint` or the `checkpoint_dir` given (postergenre.training.checkpoint); a
rerun with the same settings and data resumes after that epoch, and the checkpoint is
deleted once the new model is in place.

A model folder holds `model.keras` (raw RGB pixels in [0, 255] -> 19 probabilities),
`saved_model/` (a SavedModel whose `serving_default` takes JPEG bytes), `metadata.json`
(genres in order, image size, preprocessing, data version), `history.json` (one entry per
epoch: loss, val_loss, val_auc; the linear probe has one), `training.json` (with
`resumed_from_epoch`: the checkpoint's last finished epoch when the run resumed, else
null), `timing.json` (seconds and images per second: the clock, kept out of DVC's hash
by .dvcignore) and `dvclive/` (per-epoch metrics and plots for DVC).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from postergenre.atomic import atomic_folder, write_json
from postergenre.configs import (
    LinearProbeConfig,
    ModelSpec,
    ScratchConfig,
    TrainingConfig,
    TransferConfig,
)
from postergenre.data.shards import dataset, decode_poster, labels_of, read_manifest
from postergenre.genres import GENRES
from postergenre.reproducible import (
    export_variables_in_name_order,
    normalize_keras_archive,
    normalize_saved_model_fingerprint,
)
from postergenre.training.checkpoint import Checkpoint, data_fingerprint, default_checkpoint_dir
from postergenre.training.models import (
    WeightedBinaryCrossentropy,
    build_head,
    build_linear_probe,
    build_scratch_cnn,
    build_transfer_base,
    head_parts,
    join_base_and_head,
    split_at_last_block,
)
from postergenre.typed_config import to_mapping

log = logging.getLogger(__name__)
MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
METADATA_FILE = "metadata.json"
TIMING_FILE = "timing.json"
TIMING_KEYS = ("seconds", "feature_seconds", "train_images_per_second")
PREPROCESSING = ("decode JPEG to RGB uint8, resize the whole poster to a square of "
                 "image_size pixels (area interpolation), float32 in [0, 255]; the model "
                 "scales its own input")


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
# The backbones bfloat16 speeds up there: VGG16's dense convolutions run on AMX (as the
# scratch CNN's do); EfficientNet-Lite0's depthwise ones do not, and took 1.35x
# float32's time in bfloat16 (224 px, same machine), so auto keeps it in float32 on the CPU.
CPU_BFLOAT16_BACKBONES = ("vgg16",)


def cpu_has_bfloat16_units(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bfloat16 matrix units (AMX), from the kernel's CPU flags
    (False where there is no /proc/cpuinfo: macOS, Windows)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    return any(line.startswith("flags") and CPU_BFLOAT16_FLAG in line.split()
               for line in text.splitlines())


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


def _seed_everything(seed: int, deterministic: bool = False) -> None:
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
    """One progress bar over epochs on a terminal (none when piped), and one INFO line per
    epoch for `-v`: Keras' own per-epoch lines would flood `make run`'s output."""

    def __init__(self, epochs: int, name: str, done: int = 0, first_epoch: int = 1) -> None:
        super().__init__()
        self.bar = tqdm(total=epochs, initial=done, desc=f"train {name}", unit="epoch",
                        disable=None, leave=False)
        self.name = name
        self.offset = first_epoch - 1  # epochs of earlier phases, for the log line

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        shown = {k: f"{float(v):.4f}" for k, v in logs.items()
                 if k in ("loss", "val_loss", "val_auc")}
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update()
        log.info("%s epoch %d: %s", self.name, self.offset + epoch + 1,
                 " ".join(f"{k} {v}" for k, v in shown.items()))

    def on_train_end(self, logs: dict | None = None) -> None:
        self.bar.close()


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
        entry = {"epoch": self.first_epoch + epoch,
                 **{k: float(v) for k, v in logs.items()}}
        if self.phase:
            entry["phase"] = self.phase
        self.entries.append(entry)
        self.done = epoch + 1
        self.finished = bool(self.model.stop_training) or self.done >= self.params["epochs"]
        current = logs.get("val_loss")
        improved = current is not None and float(current) < self.best_loss
        if improved:
            self.best_loss = float(current)
            self.best_weights = self.model.get_weights()
        self._save(best=improved, epoch=self.done)

    def _save(self, best: bool, epoch: int) -> None:
        if self.checkpoint is None:
            return
        if best:
            self.best_file = f"{self.stage}-best-e{epoch:04d}.npz"
            with open(self.checkpoint.new_file(self.best_file), "wb") as handle:
                np.savez(handle, **{f"w{i}": w for i, w in enumerate(self.best_weights)})
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


def _fit(model: keras.Model, train, validation, config: ScratchConfig | TransferConfig,
         epochs: int | None = None, name: str = "", phase: str = "", first_epoch: int = 1,
         to_beat: float | None = None, checkpoint: Checkpoint | None = None,
         stage: str = "fit", earlier: list[dict] | None = None, **fit_args) -> list[dict]:
    """Fit with early stopping on the validation loss; leave the best epoch's weights in
    `model`, and return one dict per epoch (numbered from `first_epoch`).

    `epochs` overrides `config.epochs` (the fine-tuning phase). With `to_beat` (the best
    validation loss so far), an epoch is kept only if it beats it: when none does, the
    model keeps the weights it came in with. With `checkpoint`, every finished epoch is
    saved under `stage` (with `earlier`, the history of the phases before) and a loaded
    checkpoint of this stage is resumed: its finished epochs are not trained again.
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
            callbacks=[EpochProgress(epochs, name or model.name, keeper.done, first_epoch),
                       early_stopping, *([plateau] if plateau else []), keeper],
            **fit_args,
        )
    if keeper.best_weights is not None:
        model.set_weights(keeper.best_weights)
    return [{k: v for k, v in e.items() if k != "stage"} for e in keeper.entries]


def _write_dvclive(live_dir: Path, history: list[dict]) -> None:
    """DVC's per-epoch metrics and plots (what dvclive's Keras callback writes), from the
    whole history: a resumed run's folder has every epoch too."""
    try:
        from dvclive import Live
        from dvclive.utils import standardize_metric_name

        # dvcyaml=None: the project's dvc.yaml declares the plots; no experiment commits.
        live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None)
    except Exception as err:  # noqa: BLE001 - logging must never stop training
        # dvclive reads the git state (it fails in a repository with no commit yet).
        log.warning("dvclive disabled (%s); per-epoch numbers stay in history.json", err)
        return
    for entry in history:
        for key, value in entry.items():
            if key not in ("epoch", "phase"):
                live.log_metric(standardize_metric_name(key, "dvclive.keras"), value)
        live.next_step()
    live.end()


def export_serving(model: keras.Model, path: str | os.PathLike[str], image_size: int) -> Path:
    """A SavedModel whose `serving_default` takes JPEG (or PNG) bytes, returns 19 probabilities.

    TF Serving, or any client that can send a string tensor, needs no Python code of ours.
    A second endpoint, `serve_examples`, takes serialized `tf.train.Example`s as the shards
    hold them (the `image` feature) and returns the same probabilities: the signature
    tfx-bsl's RunInference feeds (one string input, a dict of outputs) in `batch_predict`.
    """
    path = Path(path)

    def decode(data: tf.Tensor) -> tf.Tensor:
        image = tf.image.resize(decode_poster(data), [image_size, image_size], method="area")
        return tf.cast(image, tf.float32)

    def probabilities(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.float32)
        return {"probabilities": tf.cast(model(images, training=False), tf.float32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return probabilities(image_bytes)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        # Only the image is parsed: scoring needs no labels (a catalogue has none).
        features = {"image": tf.io.FixedLenFeature([], tf.string)}
        return probabilities(tf.io.parse_example(examples, features)["image"])

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve)
    archive.add_endpoint("serve_examples", serve_examples)
    with export_variables_in_name_order():
        archive.write_out(str(path), verbose=False)
    return path


def _write_outputs(model: keras.Model, model_dir: Path, history: list[dict], info: dict,
                   data_version: str, live: bool = False) -> dict:
    """Write the model folder's files into `model_dir` (the partial folder); with
    `live`, dvclive's per-epoch files from `history` too."""
    model_dir.mkdir(parents=True, exist_ok=True)
    if live:
        _write_dvclive(model_dir / "dvclive", history)
    model.save(model_dir / MODEL_FILE)
    normalize_keras_archive(model_dir / MODEL_FILE)
    export_serving(model, model_dir / SAVED_MODEL_DIR, int(info["image_size"]))
    normalize_saved_model_fingerprint(model_dir / SAVED_MODEL_DIR)
    write_json(model_dir / METADATA_FILE, {
        "model": info["model"], "genres": list(GENRES), "image_size": info["image_size"],
        "input": "float32 RGB pixels in [0, 255], shape (batch, size, size, 3)",
        "preprocessing": PREPROCESSING, "serving_signature": "serving_default: "
        "image_bytes (string, JPEG/PNG) -> probabilities (float32, 19)",
        "data_version": data_version,
    })
    write_json(model_dir / "history.json", history)
    best = min(history, key=lambda e: e["val_loss"]) if history else {}
    info = {**info, "best_epoch": best.get("epoch"), "best_val_loss": best.get("val_loss"),
            "best_val_auc": best.get("val_auc"), "epochs_run": len(history),
            "genres": list(GENRES), "data_version": data_version}
    # The clock's figures in their own file, which .dvcignore keeps out of DVC's hash of
    # the model folder (reproducible.py); training.json is the same on every rerun.
    write_json(model_dir / TIMING_FILE, {k: info[k] for k in TIMING_KEYS if k in info})
    write_json(model_dir / "training.json",
               {k: v for k, v in info.items() if k not in TIMING_KEYS})
    return info


def _throughput(history: list[dict], seconds: float, examples: int) -> float:
    return round(examples * max(len(history), 1) / max(seconds, 1e-9), 1)


def _input_size(config: TrainingConfig | LinearProbeConfig, manifest: dict) -> int:
    """The square side the model takes: its own `image_size`, or the shards'."""
    return int(config.image_size or manifest["image_size"])


def _images(prepared_dir: str | os.PathLike[str], split: str, batch_size: int, size: int,
            shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
    """A split's (image, labels) batches at `size` pixels (shards of another size are
    resized with area interpolation, as evaluate does)."""
    data = dataset(prepared_dir, split, batch_size, shuffle=shuffle, seed=seed)
    if size != int(read_manifest(prepared_dir)["image_size"]):
        data = data.map(lambda x, y: (tf.image.resize(x, (size, size), method="area"), y),
                        num_parallel_calls=tf.data.AUTOTUNE)
    return data


CROP_SCALE = 0.9  # the `crop` transform keeps this share of each side
BRIGHTNESS = 0.1  # `brightness` adds up to this share of the [0, 255] range
CONTRAST = 0.2  # `contrast` scales each poster's deviation from its mean by 1 +- this


def augment_batch(images: tf.Tensor, seed: tf.Tensor, transforms: tuple[str, ...]
                  ) -> tf.Tensor:
    """Random transforms of a batch of float32 RGB posters in [0, 255], one draw per
    poster, from a (2,) int seed (stateless: the same seed, the same batch)."""
    if not transforms:
        return images
    n = tf.shape(images)[0]
    size = tf.shape(images)[1:3]

    def uniform(shape, op: int, low: float, high: float) -> tf.Tensor:
        return tf.random.stateless_uniform(shape, seed + tf.constant([0, op], tf.int64),
                                           low, high)

    if "crop" in transforms:
        corner = uniform([n, 2], 1, 0.0, 1.0 - CROP_SCALE)
        boxes = tf.concat([corner, corner + CROP_SCALE], axis=1)
        images = tf.image.crop_and_resize(images, boxes, tf.range(n), size)
    if "flip" in transforms:
        flip = uniform([n, 1, 1, 1], 2, 0.0, 1.0) < 0.5
        images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    if "contrast" in transforms:
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        images = (images - mean) * uniform([n, 1, 1, 1], 3, 1 - CONTRAST, 1 + CONTRAST) + mean
    if "brightness" in transforms:
        images = images + uniform([n, 1, 1, 1], 4, -BRIGHTNESS, BRIGHTNESS) * 255.0
    return tf.clip_by_value(images, 0.0, 255.0)


def cached_images(prepared_dir: str | os.PathLike[str], split: str, batch_size: int,
                  size: int, shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
    """A split's (image, labels) batches as `_images` gives them, decoded only once.

    The first epoch decodes the shards' JPEGs and keeps the posters in memory as uint8
    (records x side^2 x 3 bytes: 1.8 GB for 36k posters at 128 px, a quarter of float32);
    later epochs read them from there. Shuffling (each epoch anew, from `seed`) and the
    resize to `size` come after the cache, augmentation after that (`_augmented`): every
    epoch still sees its own order and transforms.
    """
    manifest = read_manifest(prepared_dir)
    records = int(manifest["counts"][split]["records"])
    data = (dataset(prepared_dir, split, batch_size)
            # The shards decode to uint8: the cast back from float32 is exact.
            .map(lambda x, y: (tf.cast(x, tf.uint8), y), num_parallel_calls=tf.data.AUTOTUNE)
            # A known length: Keras then knows the steps of an epoch (and
            # steps_per_execution never runs past the end).
            .unbatch().apply(tf.data.experimental.assert_cardinality(records)).cache())
    if shuffle:
        data = data.shuffle(max(records, 1), seed=seed, reshuffle_each_iteration=True)
    resize = size != int(manifest["image_size"])

    def to_float(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = tf.cast(x, tf.float32)
        return (tf.image.resize(x, (size, size), method="area") if resize else x), y

    return (data.batch(batch_size).map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def _augmented(data: tf.data.Dataset, transforms: tuple[str, ...], seed: int) -> tf.data.Dataset:
    """`data`'s batches with random transforms, drawn anew every epoch (reproducibly)."""
    if not transforms:
        return data
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return (tf.data.Dataset.zip(data, seeds)
            .map(lambda batch, s: (augment_batch(batch[0], s, transforms), batch[1]),
                 num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def _open_checkpoint(kind: str, name: str, config: TrainingConfig,
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


def _finished_epochs(checkpoint: Checkpoint, stage: str | None = None) -> int:
    """Epochs the loaded checkpoint holds: all of them, or those of `stage`."""
    state = checkpoint.state
    if state is None:
        return 0
    if stage is None:
        return len(state["history"])
    return int(state["epochs_done"]) if state["stage"] == stage else 0


def _tagged(history: list[dict], stage: str) -> list[dict]:
    return [{**entry, "stage": stage} for entry in history]


def train_scratch(prepared_dir: str | os.PathLike[str], model_dir: str | os.PathLike[str],
                  config: ScratchConfig, name: str = "scratch_cnn",
                  data_version: str = "",
                  checkpoint_dir: str | os.PathLike[str] | None = None) -> dict:
    """Train the CNN from scratch on the shards in `prepared_dir` (streamed, resized to
    the model's `image_size`, randomly transformed with `augment`).

    The model folder is built in `<model_dir>.partial` and swapped into place when whole;
    every finished epoch is checkpointed to `checkpoint_dir` (default
    `<model_dir>.checkpoint`, or an s3:// URL) and a rerun with the same settings and
    data resumes after it (`resumed_from_epoch` in training.json); the checkpoint is
    deleted once the model is in place.
    """
    _seed_everything(config.seed, config.deterministic)
    manifest = read_manifest(prepared_dir)
    size = _input_size(config, manifest)
    records = int(manifest["counts"]["train"]["records"])
    model_dir = Path(model_dir)
    with atomic_folder(model_dir) as work:
        with training_device(config.require_gpu, config.mixed_precision) as device:
            global_batch = per_replica_batch(config.batch_size, device) * device.replicas
            log.info("%s: %s on %s (%d replicas, %s), %d px, %d epochs, batch %d", name,
                     config.describe(), device.kind, device.replicas, device.precision, size,
                     config.epochs, global_batch)
            checkpoint = _open_checkpoint("scratch", name, config, prepared_dir, model_dir,
                                          checkpoint_dir, device, global_batch)
            resumed = _finished_epochs(checkpoint)
            model = build_scratch_cnn(size, config, name)
            compile_model(model, manifest, config, config.learning_rate,
                     math.ceil(records / global_batch), config.epochs, config.clipnorm)
            # A resumed run draws its data order and transforms from another seed: the
            # same seed would repeat epoch 1's instead of going on.
            seed = config.seed + resumed
            train = _augmented(cached_images(prepared_dir, "train", global_batch, size,
                                             shuffle=True, seed=seed), config.augment, seed)
            started = time.perf_counter()
            history = _fit(model, train,
                           cached_images(prepared_dir, "validation", global_batch, size),
                           config, name=name, checkpoint=checkpoint)
            seconds = time.perf_counter() - started
        info = {
            "model": name, "kind": "scratch", "description": config.describe(),
            "image_size": size, "parameters": int(model.count_params()),
            "seconds": round(seconds, 1), **device.describe(), "batch_size": global_batch,
            "train_images_per_second": _throughput(history[resumed:], seconds, records),
            "resumed_from_epoch": resumed or None,
            "params": to_mapping(config),
        }
        info = _write_outputs(model, work, history, info, data_version, live=True)
    checkpoint.remove()  # the model is in place: nothing left to resume
    return info


def base_features(base: keras.Model, prepared_dir: str | os.PathLike[str], split: str,
                  batch_size: int, size: int | None = None) -> np.ndarray:
    """The frozen base's output for every record of a split, in shard order (resized to
    `size`, the base's input, when the shards are another size)."""
    size = size or int(base.input_shape[1])
    images_only = _images(prepared_dir, split, batch_size, size).map(lambda x, y: x)
    return base.predict(images_only, verbose=0)


# The feature cache's files, inside the partial model folder (on the output's volume, not
# in a small /tmp); removed before the folder is swapped into place.
FEATURES_DIR = ".features"


def write_features(model: keras.Model, images: tf.data.Dataset, records: int,
                   path: str | os.PathLike[str]) -> np.ndarray:
    """`model`'s output for every batch of `images`, written batch by batch into the .npy
    file `path` and returned memory-mapped (read-only): memory stays at one batch
    however many posters there are (VGG16's trunk at 224 px and 36k posters is 14 GB)."""
    out, row = None, 0
    for batch in images:
        values = np.asarray(model.predict_on_batch(batch))
        if values.dtype not in (np.float16, np.float32):
            # A mixed_bfloat16 base's output: .npy has no bfloat16 (the file would read
            # back as raw 2-byte voids), so the cache keeps it as float32.
            values = values.astype(np.float32)
        if out is None:
            out = np.lib.format.open_memmap(path, mode="w+", dtype=values.dtype,
                                            shape=(records, *values.shape[1:]))
        if row + len(values) > records:
            raise ValueError(f"{path}: more than the {records} records expected")
        out[row:row + len(values)] = values
        row += len(values)
    if out is None or row != records:
        raise ValueError(f"{path}: {row} records of features, expected {records}")
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def _split_features(model: keras.Model, prepared_dir: str | os.PathLike[str], split: str,
                    batch_size: int, size: int, records: int, folder: Path) -> np.ndarray:
    """The frozen `model`'s output for a split's posters, in shard order, as a file."""
    images = _images(prepared_dir, split, batch_size, size).map(lambda x, y: x)
    return write_features(model, images, records, folder / f"{model.name}-{split}.npy")


def feature_batches(features: np.ndarray, labels: np.ndarray, batch_size: int,
                    shuffle_seed: int | None = None) -> tf.data.Dataset:
    """(features, labels) batches streamed from `features` (a memory-mapped .npy), in
    order or shuffled anew each epoch from `shuffle_seed`.

    The graph holds only the row numbers and their shuffle: the rows are read per batch
    (one fancy index into the memmap), so the features never become a graph constant
    (from_tensor_slices over an array would embed it, and stop at TensorFlow's 2 GB
    limit). The order is the one from_tensor_slices(...).shuffle(n, seed) gives: the
    shuffle depends on the seed and the number of elements, not on what they hold.
    """
    n = len(labels)
    targets = np.asarray(labels, dtype="float32")
    order = tf.data.Dataset.range(n)
    if shuffle_seed is not None:
        order = order.shuffle(n, seed=shuffle_seed)

    def gather(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(features[rows]), targets[rows]

    dtype = tf.as_dtype(features.dtype)

    def read(rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x, y = tf.numpy_function(gather, [rows], (dtype, tf.float32), stateful=False)
        x.set_shape((None, *features.shape[1:]))
        y.set_shape((None, targets.shape[1]))
        return x, y

    return order.batch(batch_size).map(read).prefetch(tf.data.AUTOTUNE)


def _unfreeze(layers_: list[keras.layers.Layer]) -> None:
    """Make layers trainable, batch normalisation excepted (it keeps its ImageNet
    statistics and runs in inference mode: a few thousand posters would only blur them)."""
    for layer in layers_:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)


def train_transfer(prepared_dir: str | os.PathLike[str], model_dir: str | os.PathLike[str],
                   config: TransferConfig, name: str = "transfer",
                   data_version: str = "",
                   checkpoint_dir: str | os.PathLike[str] | None = None) -> dict:
    """Train a head on a frozen pretrained base (VGG16 or Lite0), then optionally
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
    are computed again, the finished epochs are not).
    """
    _seed_everything(config.seed, config.deterministic)
    manifest = read_manifest(prepared_dir)
    size = _input_size(config, manifest)
    model_dir = Path(model_dir)
    train_y, _ = labels_of(prepared_dir, "train")
    val_y, _ = labels_of(prepared_dir, "validation")
    labels = {"train": train_y, "validation": val_y}
    with atomic_folder(model_dir) as work:
        with training_device(config.require_gpu, config.mixed_precision,
                             config.backbone in CPU_BFLOAT16_BACKBONES) as device:
            global_batch = per_replica_batch(config.batch_size, device) * device.replicas
            log.info("%s: %s on %s, %d px, batch %d", name, config.describe(), device.kind,
                     size, global_batch)
            checkpoint = _open_checkpoint("transfer", name, config, prepared_dir, model_dir,
                                          checkpoint_dir, device, global_batch)
            resumed = _finished_epochs(checkpoint)
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
                trunk, tail = split_at_last_block(base)
                cached = {split: _split_features(trunk, prepared_dir, split, global_batch,
                                                 size, len(y), cache)
                          for split, y in labels.items()}
                pooled = keras.Model(tail.inputs, pool(tail.outputs[0]), name="pooled")
                vectors = {split: write_features(
                               pooled, feature_batches(cached[split], y, global_batch)
                               .map(lambda x, _: x), len(y), cache / f"pooled-{split}.npy")
                           for split, y in labels.items()}
            else:
                pooled = keras.Model(base.inputs, pool(base.outputs[0]), name="pooled")
                vectors = {split: _split_features(pooled, prepared_dir, split, global_batch,
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
                seed = config.seed + _finished_epochs(checkpoint, "head")
                history = _fit(
                    classifier, feature_batches(vectors["train"], train_y, global_batch, seed),
                    feature_batches(vectors["validation"], val_y, global_batch), config,
                    name=name, phase="head" if tuning else "", checkpoint=checkpoint,
                    stage="head")
            trainable = int(sum(np.prod(w.shape) for w in classifier.trainable_weights))
            if tuning:
                _unfreeze(tail.layers)
                inputs = keras.Input(tail.input_shape[1:], name="trunk_features")
                tuned = keras.Model(inputs, head(tail(inputs)), name=f"{name}_fine_tune")
                trainable = int(sum(np.prod(w.shape) for w in tuned.trainable_weights))
                compile_model(tuned, manifest, config, config.fine_tune_learning_rate, steps,
                              config.fine_tune_epochs)
                seed = config.seed + _finished_epochs(checkpoint, "fine_tune")
                history += _fit(
                    tuned, feature_batches(cached["train"], train_y, global_batch, seed),
                    feature_batches(cached["validation"], val_y, global_batch), config,
                    epochs=config.fine_tune_epochs, name=f"{name} fine-tune",
                    phase="fine_tune", first_epoch=len(history) + 1,
                    to_beat=min(e["val_loss"] for e in history), checkpoint=checkpoint,
                    stage="fine_tune", earlier=_tagged(history, "head"))
                del cached
            del vectors
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
            "train_images_per_second": _throughput(history[resumed:], seconds, len(train_y)),
            "resumed_from_epoch": resumed or None,
            "params": to_mapping(config),
        }
        if tuning:
            kept = min(history, key=lambda e: e["val_loss"])
            info["fine_tune_kept"] = kept.get("phase") == "fine_tune"
        info = _write_outputs(model, work, history, info, data_version, live=True)
    checkpoint.remove()  # the model is in place: nothing left to resume
    return info


def _binary_cross_entropy(y: np.ndarray, p: np.ndarray) -> float:
    """The Keras loss's value (unweighted): mean over labels and examples, clipped."""
    eps = keras.config.epsilon()
    p = np.clip(p, eps, 1 - eps)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


def _keras_auc(y: np.ndarray, p: np.ndarray) -> float:
    """The `auc` the Keras trainers log (multi-label ROC AUC, averaged over the 19
    genres), so every history.json compares."""
    metric = keras.metrics.AUC(multi_label=True, num_labels=len(GENRES))
    metric.update_state(y.astype("float32"), p.astype("float32"))
    return float(metric.result())


def fit_logistic_per_genre(features: np.ndarray, labels: np.ndarray,
                           config: LinearProbeConfig) -> tuple[np.ndarray, np.ndarray, list]:
    """One scikit-learn logistic regression per genre (one-vs-rest) on standardised
    features: (coef (19, d), intercept (19,), the genres fitted as constants).

    A genre with no positive (or no negative) example in train has nothing to separate:
    its weights are zero and its intercept the logit of its smoothed prior,
    (positives + 0.5) / (n + 1), so its score is that prior for every poster.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    n, dim = features.shape
    coef = np.zeros((labels.shape[1], dim))
    intercept = np.zeros(labels.shape[1])
    constant = []
    for j, genre in enumerate(GENRES):
        y = labels[:, j].astype(np.int64)
        if y.min() == y.max():
            prior = (y.sum() + 0.5) / (n + 1.0)
            intercept[j] = math.log(prior / (1.0 - prior))
            constant.append(genre)
            continue
        fitted = LogisticRegression(
            C=config.C, class_weight=None if config.class_weight == "none" else "balanced",
            max_iter=config.max_iter, random_state=config.seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            fitted.fit(features, y)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            log.warning("linear probe: %s did not converge in %d iterations", genre,
                        config.max_iter)
        coef[j], intercept[j] = fitted.coef_[0], fitted.intercept_[0]
    return coef, intercept, constant


def standardise(features: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """(features - mean) / std, a constant feature's std taken as 1 (as StandardScaler)."""
    scale = np.sqrt(np.where(variance > 1e-12, variance, 1.0))
    return (features - mean) / scale


def train_linear_probe(prepared_dir: str | os.PathLike[str],
                       model_dir: str | os.PathLike[str], config: LinearProbeConfig,
                       name: str = "linear_probe", data_version: str = "",
                       checkpoint_dir: str | os.PathLike[str] | None = None) -> dict:
    """A logistic regression per genre on a frozen base's pooled, standardised features.

    The features of train and validation are computed once; the probe is fitted on train
    and scored on validation (history.json's one entry: loss, val_loss, val_auc). The
    result is the Keras model base -> GlobalAveragePooling -> Normalization -> Dense(19,
    sigmoid) holding the fitted weights, saved and served like every other model.

    The model folder is built in `<model_dir>.partial` and swapped into place when whole.
    One fit has no epochs to resume: `checkpoint_dir` is accepted for the trainers'
    common signature, and a killed probe starts over.
    """
    del checkpoint_dir  # nothing to checkpoint (see above)
    # One pass over the posters, no epochs: deterministic kernels cost little here, and
    # the probe has no setting for them.
    _seed_everything(config.seed, deterministic=True)
    manifest = read_manifest(prepared_dir)
    size = _input_size(config, manifest)
    model_dir = Path(model_dir)
    train_y, _ = labels_of(prepared_dir, "train")
    val_y, _ = labels_of(prepared_dir, "validation")
    with training_device(config.require_gpu,
                         dense_convolutions=config.backbone in CPU_BFLOAT16_BACKBONES) as device:
        log.info("%s: %s on %s, %d px", name, config.describe(), device.kind, size)
        base = build_transfer_base(config.backbone, size, config.weights)
        pooled = keras.Model(base.inputs,
                             keras.layers.GlobalAveragePooling2D()(base.outputs[0]))
        started = time.perf_counter()
        batch = config.batch_size * device.replicas
        features = {split: base_features(pooled, prepared_dir, split, batch, size)
                    .astype(np.float64) for split in ("train", "validation")}
        features_seconds = time.perf_counter() - started
        mean, variance = features["train"].mean(axis=0), features["train"].var(axis=0)
        coef, intercept, constant = fit_logistic_per_genre(
            standardise(features["train"], mean, variance), train_y, config)
        model = build_linear_probe(base, mean, variance, coef, intercept, name)
        seconds = time.perf_counter() - started
    history = [{"epoch": 1}]
    for split, y, prefix in (("train", train_y, ""), ("validation", val_y, "val_")):
        logits = standardise(features[split], mean, variance) @ coef.T + intercept
        p = 1.0 / (1.0 + np.exp(-logits))
        history[0][f"{prefix}loss"] = _binary_cross_entropy(y, p)
        history[0][f"{prefix}auc"] = _keras_auc(y, p)
    info = {
        "model": name, "kind": "linear_probe", "description": config.describe(),
        "backbone": config.backbone, "image_size": size,
        "parameters": int(model.count_params()),
        "trainable_parameters": int(coef.size + intercept.size),
        "constant_genres": constant,
        "seconds": round(seconds, 1), "feature_seconds": round(features_seconds, 1),
        **device.describe(),
        "train_images_per_second": _throughput([], features_seconds, len(train_y)),
        "params": to_mapping(config),
    }
    with atomic_folder(model_dir) as work:
        return _write_outputs(model, work, history, info, data_version)


# A model kind's trainer: (prepared_dir, model_dir, config, name, data_version,
# checkpoint_dir) -> info.
TRAINERS: dict[str, Callable[..., dict]] = {"scratch": train_scratch,
                                            "transfer": train_transfer,
                                            "linear_probe": train_linear_probe}


def train_model(prepared_dir: str | os.PathLike[str], model_dir: str | os.PathLike[str],
                spec: ModelSpec, data_version: str = "",
                checkpoint_dir: str | os.PathLike[str] | None = None) -> dict:
    """Train one `models` entry of params.yaml with its kind's trainer.

    `checkpoint_dir`: where the last finished epoch is kept for a rerun to resume from
    (a folder or an s3:// URL; default `<model_dir>.checkpoint`). It is a location, not
    a setting: it changes where the state is kept, never what is trained.
    """
    if spec.kind not in TRAINERS:
        raise ValueError(f"models.{spec.name}.kind: no trainer for {spec.kind!r}")
    return TRAINERS[spec.kind](prepared_dir, model_dir, spec.config, spec.name, data_version,
                               checkpoint_dir)


def load_model(model_dir: str | os.PathLike[str]) -> keras.Model:
    """Load a trained model folder's `model.keras` (no optimizer state needed)."""
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {model_dir} the output of a train step?")
    return keras.models.load_model(path, compile=False)
