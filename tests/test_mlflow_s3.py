"""MLflow the way clusters run it: a real ``mlflow server --artifacts-destination s3://...``
whose artifacts go to a real S3 endpoint on loopback (moto's server). The pipeline runs against
it with no S3 credentials of its own (the server proxies every artifact), the lineage comes out
as on SQLite, and the models are in the bucket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

import oblivio
from oblivio.tracking.registry import CHAMPION, lineage
from oblivio.tracking.store import connect
from tests.servers import free_port, start_mlflow_server
from tests.test_pipeline import LENIENT, SMALL, register_original

pytestmark = pytest.mark.kfp_local  # pipelines under kfp.local: make test-fast leaves them out

S3_KEYS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(MLflow URL, S3 endpoint): the server keeps its artifacts in s3://mlflow/artifacts."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=int(endpoint.rsplit(":", 1)[1]))
    s3.start()
    boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in S3_KEYS.items()
                                                  if k != "AWS_DEFAULT_REGION"},
                 region_name="us-east-1").create_bucket(Bucket="mlflow")
    try:
        with start_mlflow_server(tmp_path_factory.mktemp("mlflow-s3"), "s3://mlflow/artifacts",
                                 {**S3_KEYS, "MLFLOW_S3_ENDPOINT_URL": endpoint}) as uri:
            yield uri, endpoint
    finally:
        s3.stop()


def test_pipeline_lineage_with_artifacts_in_s3(s3_mlflow: tuple[str, str], trained_rgb,
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from oblivio_pipeline.local import run_local

    uri, endpoint = s3_mlflow
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("OBLIVIO_HOME", str(tmp_path / "home"))
    for key in (*S3_KEYS, "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)  # the client reaches S3 only through MLflow
    connect()
    data, model_dir = trained_rgb
    register_original("s3-tiny", model_dir)
    run_local("s3-tiny", "1", str(data), device="cpu", **SMALL, **LENIENT)
    rows = lineage("s3-tiny")
    assert [(r["version"], r["parent"]) for r in rows] == [("1", None), ("2", "1")]
    assert rows[1]["aliases"] == ["candidate", "champion"] and rows[1]["gate"] == "passed"
    loaded = oblivio.load_model(f"models:/s3-tiny@{CHAMPION}")  # through the server's proxy
    assert loaded.config["provenance"]["method"] == "projection"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket="mlflow", Prefix="artifacts/") for o in page.get("Contents", [])]
    weights = [k for k in keys if k.endswith("model.safetensors")]
    assert len(weights) >= 2, keys  # the original and the unlearned version, in the bucket
    assert any(k.endswith("report/report.md") for k in keys)
