"""``oblivio pipeline schedule`` against a stand-in for the Kubeflow Pipelines API
(tests/kfp_stub.py: no Kubeflow can run here), through the real ``kfp.Client``: what is
uploaded, and the recurring run's trigger, concurrency, catch-up and parameters."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from oblivio.cli import app
from tests.kfp_stub import serve_kfp_stub
from tests.servers import free_port

runner = CliRunner()


def test_uploads_the_batch_pipeline_and_replaces_its_schedule() -> None:
    with serve_kfp_stub() as (url, stub):
        args = ["pipeline", "schedule", "--host", url, "--cron", "0 0 2 * * *",
                "--param", "dataset_uri=s3://data/fm", "--param", "lease_minutes=120"]
        first = runner.invoke(app, args)
        assert first.exit_code == 0, first.output
        created = json.loads(first.stdout.strip().splitlines()[-1])
        uploads = [r for r in stub.requests if r["path"].endswith("/pipelines/upload")]
        assert len(uploads) == 1 and uploads[0]["query"]["name"] == ["oblivio-deletion-batch"]
        assert b"oblivio-deletion-batch" in uploads[0]["body"]  # the compiled YAML itself
        run = stub.recurring[created["recurring_run_id"]]
        assert run["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * *"
        assert run["max_concurrency"] in ("1", 1) and run["no_catchup"] is True
        assert run["pipeline_version_reference"] == {
            "pipeline_id": created["pipeline_id"], "pipeline_version_id": created["version_id"]}
        assert run["runtime_config"]["parameters"] == {"dataset_uri": "s3://data/fm",
                                                       "lease_minutes": 120}
        assert run["display_name"] == "oblivio-deletion-batch"
        # again: a new version of the same pipeline, and one schedule, not two
        second = json.loads(runner.invoke(app, args).stdout.strip().splitlines()[-1])
        assert second["pipeline_id"] == created["pipeline_id"]
        assert second["version_id"] != created["version_id"]
        assert second["replaced"] == [created["recurring_run_id"]]
        assert list(stub.recurring) == [second["recurring_run_id"]]
        assert len([r for r in stub.requests if r["path"].endswith("/pipelines/upload")]) == 1


def test_bad_cron_and_unreachable_kubeflow_are_one_line() -> None:
    bad = runner.invoke(app, ["pipeline", "schedule", "--host", "http://x", "--cron", "0 2 * * *"])
    assert bad.exit_code == 2 and "six fields, seconds first" in bad.stderr
    down = runner.invoke(app, ["pipeline", "schedule", "--host",
                               f"http://127.0.0.1:{free_port()}"])
    assert down.exit_code == 2 and down.stderr.startswith("error: Kubeflow Pipelines at http")
    assert len(down.stderr.strip().splitlines()) == 1


def test_the_uploaded_package_is_the_committed_yaml() -> None:
    from oblivio_pipeline.schedule import schedule

    with serve_kfp_stub() as (url, stub):
        schedule(url, "0 30 1 * * *")
    body = next(r["body"] for r in stub.requests if r["path"].endswith("/pipelines/upload"))
    text = body.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0].decode()
    assert next(yaml.safe_load_all(text))["pipelineInfo"]["name"] == "oblivio-deletion-batch"
