"""The training stage: one trainer per model kind (`models` in params.yaml); `train_model`
trains one entry with its kind's trainer (the one entry point of the CLI and the
Kubeflow component).

- `scratch` (training.scratch): the study's CNN from scratch, streamed from the shards.
- `transfer` (training.transfer): a head on a frozen pretrained base, then optionally its
  last block fine-tuned.
- `linear_probe` (training.linear_probe): one logistic regression per genre on a frozen
  base's pooled features.

What they share has a module each (see the package's docstring).

Faults: a trainer builds its model folder in `<model folder>.partial` and swaps it into
place whole (postergenre.atomic.atomic_folder), so a kill at any moment leaves the
previous model folder as it was. Keras trainers checkpoint every finished epoch; a rerun
with the same settings and data resumes after that epoch, and the checkpoint is deleted
once the new model is in place.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from postergenre.configs import ModelSpec
from postergenre.training.linear_probe import train_linear_probe
from postergenre.training.scratch import train_scratch
from postergenre.training.transfer import train_transfer

# A model kind's trainer: (prepared_dir, model_dir, config, name, data_version,
# checkpoint_dir, live_dir) -> info.
TRAINERS: dict[str, Callable[..., dict]] = {"scratch": train_scratch,
                                            "transfer": train_transfer,
                                            "linear_probe": train_linear_probe}


def train_model(prepared_dir: str | os.PathLike[str], model_dir: str | os.PathLike[str],
                spec: ModelSpec, data_version: str = "",
                checkpoint_dir: str | os.PathLike[str] | None = None,
                live_dir: str | os.PathLike[str] | None = None) -> dict:
    """Train one `models` entry of params.yaml with its kind's trainer.

    `checkpoint_dir`: where the last finished epoch is kept for a rerun to resume from
    (a folder or an s3:// URL; default `<model_dir>.checkpoint`). It is a location, not
    a setting: it changes where the state is kept, never what is trained. `live_dir`:
    a DVCLive folder each finished epoch is logged to as it ends (training.live).
    """
    if spec.kind not in TRAINERS:
        raise ValueError(f"models.{spec.name}.kind: no trainer for {spec.kind!r}")
    return TRAINERS[spec.kind](prepared_dir, model_dir, spec.config, spec.name, data_version,
                               checkpoint_dir, live_dir)
