"""Erasure of every copy at a location, on disk and on a real S3 endpoint (moto's server) with a
versioned bucket, where deleting the current object alone would leave older versions readable."""

from __future__ import annotations

import hashlib
from pathlib import Path

import boto3
import pytest

from oblivio.data.erase import erase
from oblivio.errors import OblivioError


def test_a_local_tree_is_erased_with_the_digest_of_each_file(tmp_path: Path) -> None:
    root = tmp_path / "run"
    (root / "weights").mkdir(parents=True)
    (root / "weights" / "model.safetensors").write_bytes(b"weights")
    (root / "ids.txt").write_text("train-1\n")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    (root / "link").symlink_to(outside)
    receipt = erase(str(root))
    assert not root.exists() and outside.read_text() == "keep me"  # links are not followed
    assert receipt["objects"] == [
        {"name": "ids.txt", "sha256": hashlib.sha256(b"train-1\n").hexdigest()},
        {"name": "weights/model.safetensors", "sha256": hashlib.sha256(b"weights").hexdigest()}]
    assert erase(str(root)) == {"where": str(root), "objects": []}  # gone already: nothing
    with pytest.raises(OblivioError, match="a path or s3:// URI only"):
        erase("gs://bucket/x")


def test_every_version_in_a_versioned_bucket_is_erased(s3_env: str) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_env)
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned",
                             VersioningConfiguration={"Status": "Enabled"})
    for body in (b"v1", b"v2"):
        s3.put_object(Bucket="versioned", Key="batches/b-1/ids.parquet", Body=body)
    s3.delete_object(Bucket="versioned", Key="batches/b-1/ids.parquet")  # a delete marker
    s3.put_object(Bucket="versioned", Key="batches/b-10/ids.parquet", Body=b"other batch")
    listed = s3.list_object_versions(Bucket="versioned", Prefix="batches/b-1/")
    assert len(listed["Versions"]) == 2 and len(listed["DeleteMarkers"]) == 1  # the control
    receipt = erase("s3://versioned/batches/b-1")
    assert len(receipt["objects"]) == 3
    assert {o["etag"] for o in receipt["objects"]} == {
        hashlib.md5(b"v1").hexdigest(), hashlib.md5(b"v2").hexdigest(), None}
    left = s3.list_object_versions(Bucket="versioned", Prefix="batches/")
    assert [v["Key"] for v in left.get("Versions", [])] == ["batches/b-10/ids.parquet"]
    assert not left.get("DeleteMarkers")


def test_a_run_folder_is_erased_but_what_the_erasing_step_keeps(tmp_path: Path,
                                                                s3_env: str) -> None:
    """The batch's last step erases its own run's pipeline-root folder, all but its own
    outputs (the launcher uploads them after it returns), on disk and in a versioned bucket."""
    root = tmp_path / "oblivio-deletion-batch" / "run-1"
    for name in ("sample-data/1/samples/forget.parquet", "complete-batch-x/2/other",
                 "complete-batch/3/receipt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    receipt = erase(str(root), keep=str(root / "complete-batch" / "3"))
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == [
        "complete-batch", "complete-batch/3", "complete-batch/3/receipt"]
    assert [o["name"] for o in receipt["objects"]] == [
        "complete-batch-x/2/other", "sample-data/1/samples/forget.parquet"]
    s3 = boto3.client("s3", endpoint_url=s3_env)
    s3.create_bucket(Bucket="roots")
    s3.put_bucket_versioning(Bucket="roots", VersioningConfiguration={"Status": "Enabled"})
    prefix = "pipeline-root/oblivio-deletion-batch/run-1"
    for key in ("sample-data/1/samples/forget.parquet", "complete-batch/3/receipt",
                "complete-batch/3x/other"):
        for body in (b"v1", b"v2"):
            s3.put_object(Bucket="roots", Key=f"{prefix}/{key}", Body=body)
    receipt = erase(f"s3://roots/{prefix}", keep=f"s3://roots/{prefix}/complete-batch/3")
    assert len(receipt["objects"]) == 4  # two keys, two versions each
    left = s3.list_object_versions(Bucket="roots", Prefix=prefix)
    assert {v["Key"] for v in left["Versions"]} == {f"{prefix}/complete-batch/3/receipt"}
