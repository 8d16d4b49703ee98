"""Datasets and models on S3, against a real S3 endpoint on loopback (moto's server)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import oblivio
from oblivio.data import open_dataset
from oblivio.errors import OblivioError
from oblivio.models import build
from tests.datasets import make_rgb_dataset
from tests.servers import free_port


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
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(OblivioError, match="dataset s3://oblivio/x:"):
        open_dataset("s3://oblivio/x")
