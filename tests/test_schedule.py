"""``oblivio pipeline schedule`` and ``unschedule`` against a stand-in for the Kubeflow
Pipelines API (tests/kfp_stub.py: no Kubeflow can run here), through the real ``kfp.Client``:
what is uploaded, the recurring run's trigger, concurrency, catch-up and parameters, the token
a multi-user Kubeflow demands, namespaces, and a replacement that never kills a batch in
flight."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
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
        assert second["left_disabled"] == []
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
    from oblivio_pipeline.schedule import Target, schedule

    with serve_kfp_stub() as (url, stub):
        schedule(Target(url), "0 30 1 * * *")
    body = next(r["body"] for r in stub.requests if r["path"].endswith("/pipelines/upload"))
    text = body.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0].decode()
    assert next(yaml.safe_load_all(text))["pipelineInfo"]["name"] == "oblivio-deletion-batch"


def _schedule(url: str, *extra: str, env: dict | None = None):
    return runner.invoke(app, ["pipeline", "schedule", "--host", url, "--wait-minutes",
                               "0.01", *extra], env=env)


def test_a_multi_user_kubeflow_gets_the_token_and_refuses_without_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KF_PIPELINES_SA_TOKEN_PATH", raising=False)
    token = tmp_path / "token"
    token.write_text("projected-sa-token\n")
    with serve_kfp_stub(token="projected-sa-token") as (url, stub):
        refused = _schedule(url, "--namespace", "team-a")
        assert refused.exit_code == 2, refused.output
        assert refused.stderr.startswith(f"error: Kubeflow Pipelines at {url}: 401 ")
        assert "--token-file" in refused.stderr and len(refused.stderr.splitlines()) == 1
        assert stub.pipelines == {} and stub.recurring == {}  # nothing made
        made = _schedule(url, "--namespace", "team-a", "--token-file", str(token))
        assert made.exit_code == 0, made.output
        sent = [r for r in stub.requests if not r["path"].endswith("/healthz")]
        assert {r["headers"].get("authorization") for r in sent[-6:]} == {
            "Bearer projected-sa-token"}
        # the kubelet renews a projected token: the next call reads the file again
        token.write_text("renewed-token")
        stub.token = "renewed-token"
        monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
        assert _schedule(url, "--namespace", "team-a").exit_code == 0
        monkeypatch.delenv("KF_PIPELINES_SA_TOKEN_PATH")
        bearer = _schedule(url, "--namespace", "team-a",
                           env={"OBLIVIO_KFP_TOKEN": "renewed-token"})
        assert bearer.exit_code == 0, bearer.output
        assert len(stub.recurring) == 1  # each call replaced the last
        missing = _schedule(url, "--token-file", str(tmp_path / "absent"))
        assert missing.exit_code == 2 and "does not exist" in missing.stderr


def test_each_namespace_gets_its_own_pipeline_under_the_same_name() -> None:
    with serve_kfp_stub() as (url, stub):
        ids = {ns: json.loads(_schedule(url, "--namespace", ns).stdout.splitlines()[-1])
               for ns in ("team-a", "team-b")}
        assert ids["team-a"]["pipeline_id"] != ids["team-b"]["pipeline_id"]
        assert sorted(p["namespace"] for p in stub.pipelines.values()) == ["team-a", "team-b"]
        again = json.loads(_schedule(url, "--namespace", "team-a").stdout.splitlines()[-1])
        assert again["pipeline_id"] == ids["team-a"]["pipeline_id"]
        assert again["replaced"] == [ids["team-a"]["recurring_run_id"]]
        assert ids["team-b"]["recurring_run_id"] in stub.recurring  # the other team's stays


def test_replacing_the_schedule_never_kills_a_batch_in_flight() -> None:
    from oblivio_pipeline.schedule import Target, schedule, unschedule

    with serve_kfp_stub() as (url, stub):
        first = schedule(Target(url), "0 0 2 * * *")
        old = first["recurring_run_id"]
        batch = stub.start_run(old)
        # the wait runs out while the batch runs: the old schedule is disabled, not deleted
        second = schedule(Target(url), "0 0 3 * * *", wait_s=0.3, poll_s=0.05)
        assert second["left_disabled"] == [old] and second["replaced"] == []
        assert stub.recurring[old]["status"] == "DISABLED"
        assert stub.runs[batch]["state"] == "RUNNING" and stub.killed == []
        # the batch ends while the next call waits: then, and only then, it is deleted
        threading.Timer(0.3, lambda: stub.runs[batch].update(state="SUCCEEDED")).start()
        started = time.monotonic()
        third = schedule(Target(url), "0 0 4 * * *", wait_s=30, poll_s=0.05)
        assert 0.25 < time.monotonic() - started < 10
        assert old in third["replaced"] and old not in stub.recurring
        assert stub.killed == []
        calls = [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in stub.requests
                 if old in r["path"]]
        assert calls[0] == ("POST", f"{old}:disable") and calls[-1] == ("DELETE", old)
        # uninstall: the same care
        live = third["recurring_run_id"]
        stub.start_run(live, state="SUCCEEDED")
        assert unschedule(Target(url), wait_s=1, poll_s=0.05) == {"deleted": [live],
                                                                   "left_disabled": []}
        assert stub.recurring == {} and stub.killed == []


def test_a_schedule_that_cannot_be_created_leaves_the_old_one_running() -> None:
    from oblivio.errors import OblivioError
    from oblivio_pipeline.schedule import Target, schedule

    with serve_kfp_stub() as (url, stub):
        old = schedule(Target(url), "0 0 2 * * *")["recurring_run_id"]
        stub.refuse_create = True
        with pytest.raises(OblivioError, match="500 .*quota"):
            schedule(Target(url), "0 0 3 * * *", wait_s=1, poll_s=0.05)
        assert list(stub.recurring) == [old] and stub.recurring[old]["status"] == "ENABLED"


def test_every_page_of_recurring_runs_and_runs_is_searched() -> None:
    from oblivio_pipeline.schedule import PAGE, Target, schedule

    with serve_kfp_stub() as (url, stub):
        first = schedule(Target(url), "0 0 2 * * *")
        experiment = first["experiment_id"]
        for i in range(2 * PAGE + 5):  # other teams' schedules fill the first pages
            stub.add_recurring(experiment, f"other-{i}")
        del stub.recurring[first["recurring_run_id"]]
        ours = stub.add_recurring(experiment, "oblivio-deletion-batch")
        for other in list(stub.recurring)[:2 * PAGE]:
            stub.start_run(other, state="SUCCEEDED")
        batch = stub.start_run(ours)
        second = schedule(Target(url), "0 0 3 * * *", wait_s=0.2, poll_s=0.05)
        assert second["left_disabled"] == [ours]  # its run is on the third page of runs
        stub.runs[batch]["state"] = "SUCCEEDED"
        third = schedule(Target(url), "0 0 3 * * *", wait_s=0.2, poll_s=0.05)
        assert third["replaced"] == [ours, second["recurring_run_id"]]
        assert len(stub.recurring) == 2 * PAGE + 5 + 1


def test_unschedule_with_nothing_scheduled_changes_nothing() -> None:
    with serve_kfp_stub() as (url, stub):
        result = runner.invoke(app, ["pipeline", "unschedule", "--host", url])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"deleted": [], "left_disabled": []}
        assert stub.experiments == {}
