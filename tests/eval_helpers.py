"""Helpers shared by the evaluation / prediction tests: a tiny trained model."""

from __future__ import annotations

from pathlib import Path

TINY_MODEL = {"conv1_filters": 4, "conv2_filters": 4, "dense_units": 8, "epochs": 1,
              "batch_size": 32, "learning_rate": 0.02}


def train_tiny(prepared: Path, out: Path) -> Path:
    """A from-scratch CNN trained for one epoch: real weights, in a few seconds."""
    from postergenre.configs import ScratchConfig
    from postergenre.training.scratch import train_scratch

    train_scratch(prepared, out, ScratchConfig(**TINY_MODEL), name="scratch")
    return out
