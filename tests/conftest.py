"""Shared fixtures: a tiny demo data set run through the data stages once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Small enough for a 2-core CI machine, large enough that every split has most genres.
TINY_POSTERS = 240
TINY_IMAGE = 32


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A demo data set (labels.csv + posters/) of TINY_POSTERS posters."""
    from postergenre.demo import generate_demo

    out = tmp_path_factory.mktemp("tiny") / "data"
    generate_demo(out, n_posters=TINY_POSTERS, seed=3, width=48, height=72)
    return out


@pytest.fixture(scope="session")
def tiny_split(tiny_data, tmp_path_factory) -> Path:
    """tiny_data validated and split by movie."""
    from postergenre.split import split_dataset
    from postergenre.validate import validate_dataset

    work = tmp_path_factory.mktemp("tiny-split")
    validate_dataset(tiny_data, work / "validated")
    split_dataset(work / "validated" / "labels.csv", work / "split", seed=42)
    return work / "split"


@pytest.fixture(scope="session")
def tiny_prepared(tiny_data, tiny_split, tmp_path_factory) -> Path:
    """tiny_split augmented and sharded at TINY_IMAGE pixels."""
    from postergenre.augment import augment_and_shard

    out = tmp_path_factory.mktemp("tiny-prepared") / "prepared"
    augment_and_shard(tiny_data, tiny_split, out, image_size=TINY_IMAGE, shard_size=64)
    return out
