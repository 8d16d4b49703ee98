"""Datasets and models on S3, against a real S3 endpoint on loopback (moto's server)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import torch
from moto.server import ThreadedMotoServer

import oblivio
from oblivio.data import open_dataset
from oblivio.errors import OblivioError
from oblivio.models import build
from tests.datasets import make_rgb_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    if "oblivio" not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket="oblivio")
    return s3_endpoint


def test_dataset_on_s3_reads_like_local(s3_env: str, tmp_path: Path) -> None:
    local = make_rgb_dataset(tmp_path / "local")
    uri = "s3://oblivio/datasets/rgb"
    make_rgb_dataset(uri)
    remote, here = open_dataset(uri), open_dataset(local)
    assert remote.classes == here.classes
    assert torch.equal(remote.split("train").images, here.split("train").images)
    rows = remote.split("test").indices(["rgb/test/0003"])
    assert rows.tolist() == [3]


def test_model_round_trip_on_s3(s3_env: str) -> None:
    model = build("resnet18", 3, 3, 16).eval()
    oblivio.save_model(model, "s3://oblivio/models/m1", arch="resnet18",
                       class_names=["a", "b", "c"], img_size=16)
    loaded = oblivio.load_model("s3://oblivio/models/m1")
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_missing_s3_object_is_one_clear_error(s3_env: str) -> None:
    with pytest.raises(OblivioError, match="missing classes.json"):
        open_dataset("s3://oblivio/datasets/absent")


def test_unreachable_s3_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(OblivioError, match="dataset s3://oblivio/x:"):
        open_dataset("s3://oblivio/x")
