"""Shared fixtures: a tiny demo data set run through the data stages once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
# The demo's models, as params.yaml names them: tests derive from this, so adding a model
# to params.yaml needs no change here.
DEMO_MODELS: list[str] = list(yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["models"])
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Small enough for a 2-core CI machine, large enough that every split has most genres.
TINY_POSTERS = 240
TINY_IMAGE = 32


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A demo data set (labels.csv + posters/) of TINY_POSTERS posters."""
    from postergenre.configs import DemoSourceConfig
    from postergenre.sources.demo import generate_demo

    out = tmp_path_factory.mktemp("tiny") / "data"
    generate_demo(out, DemoSourceConfig(n_posters=TINY_POSTERS, seed=3, width=48, height=72))
    return out


@pytest.fixture(scope="session")
def tiny_split(tiny_data, tmp_path_factory) -> Path:
    """tiny_data validated and split by movie."""
    from postergenre.configs import SplitConfig, ValidateConfig
    from postergenre.data.split import split_dataset
    from postergenre.validation.validate import validate_dataset

    work = tmp_path_factory.mktemp("tiny-split")
    # A tiny set cannot give every genre the minimum support real data needs.
    validate_dataset(tiny_data, work / "validated", ValidateConfig(min_genre_support=1))
    split_dataset(work / "validated" / "labels.csv", work / "split", SplitConfig(seed=42))
    return work / "split"


@pytest.fixture(scope="session")
def tiny_prepared(tiny_data, tiny_split, tmp_path_factory) -> Path:
    """tiny_split augmented and sharded at TINY_IMAGE pixels."""
    from postergenre.configs import AugmentConfig
    from postergenre.data.augment import augment_and_shard

    out = tmp_path_factory.mktemp("tiny-prepared") / "prepared"
    augment_and_shard(tiny_data, tiny_split, out,
                      AugmentConfig(image_size=TINY_IMAGE, shard_size=64))
    return out


@pytest.fixture
def moto_s3(monkeypatch):
    """A real S3-compatible server (moto, server mode) on 127.0.0.1.

    Yields (endpoint, boto3 client). Fake credentials and the endpoint go into the
    environment only, where boto3, s3fs and DVC read them.
    """
    boto3 = pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", endpoint)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    import fsspec

    fsspec.config.conf.pop("s3", None)
    try:
        yield endpoint, boto3.client("s3", endpoint_url=endpoint)
    finally:
        server.stop()


@pytest.fixture
def s3(moto_s3):
    """moto S3 on loopback with a `models` bucket; yields a boto3 client."""
    _, client = moto_s3
    client.create_bucket(Bucket="models")
    return client
