"""The pipeline as users run it: the local kfp runner against a real ``mlflow server`` process
(artifacts on its disk, or proxied to a real S3 endpoint as clusters run it), a run killed
with SIGKILL and run again, the registry's lineage, gates and the deletion rule. (The compiled
spec is checked beside the pipeline, in pipelines/oblivio_unlearning/tests.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import mlflow
import pytest
import torch
from typer.testing import CliRunner

import oblivio
from oblivio.cli import app
from oblivio.deletion.promotion import promote, register_champion
from oblivio.evaluation.gates import Gates
from oblivio.runner import runner_alive
from oblivio.tracking.registry import CHAMPION, Lineage, client, lineage, log_model_version
from oblivio.tracking.runs import RUNNER_TAG
from oblivio.tracking.store import connect
from tests.servers import descendants, free_port, start_mlflow_server

pytestmark = pytest.mark.kfp_local  # pipelines under kfp.local: make test-fast leaves them out

runner = CliRunner()
LENIENT = {"max_forget_acc": 1.0, "max_retain_drop": 1.0, "min_mia_efficacy": 0.0,
           "max_reestimated_forget_acc": 1.0,
           "instance_max_test_drop": 1.0, "instance_auc_z": 1000.0}
S3_KEYS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1"}
STEPS = 50  # match's cap in the shadows' test
SMALL = {"retain_per_class": 20, "forget_samples": 30, "val_per_class": 10,
         "val_forget_samples": 20}


def register_original(name: str, model_dir: Path) -> None:
    with mlflow.start_run(experiment_id=connect()):
        register_champion(model_dir, name, Lineage("trained"))


#: ``oblivio run`` as a process: tiny's first request (class 1 by projection, over 2 shards).
RUN = ("import sys; from oblivio_pipeline.local import run_local; run_local('tiny', '1', "
       f"sys.argv[1], device='cpu', shards=2, **{ {**SMALL, **LENIENT}!r})")


def gone(pid: int) -> bool:
    return not runner_alive(f"{os.uname().nodename}:{pid}")


def kill_at_capture(command: list[str]) -> dict:
    """Start ``command`` (a local run), SIGKILL it once its capture step runs, and wait up to
    15 s for its steps to go down with it; returns the killed runner and the steps left."""
    proc = subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # until a step after the run was opened
            steps = descendants(proc.pid)
            if any("capture_activations" in line for line in steps.values()):
                break
            assert proc.poll() is None, "the run ended before the capture step"
            time.sleep(0.2)
        else:
            raise AssertionError("no capture step within 240 s")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 15
        while not all(gone(pid) for pid in steps) and time.monotonic() < deadline:
            time.sleep(0.2)
        return {"runner": f"{os.uname().nodename}:{proc.pid}",
                "left": {pid: line[:80] for pid, line in steps.items() if not gone(pid)}}
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="module")
def tiny(trained_rgb, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[dict]:
    """Model "tiny" after the pipeline's class 1 by projection over 2 shards (version 2), on
    MLflow the way clusters run it: a real ``mlflow server --artifacts-destination s3://...``
    on a real S3 endpoint (moto), and no S3 credentials of the client's own (the server
    proxies every artifact). One run for the tests that read it (a local run is a minute of
    step start-ups; make test's ``--dist loadfile`` keeps this file's tests on one worker).
    The run is first started as ``oblivio run``'s process and killed with SIGKILL at its
    capture step; version 2 is the re-run's (a process too), which closes what the kill
    left. The server is tiny's own: another test's run on a shared server would close the
    killed run first. Yields the server, the S3 endpoint, what the kill left (the steps still
    up, the abandoned run as the kill left it) and what the re-run printed."""
    data, model_dir = trained_rgb
    boto3.client("s3", endpoint_url=s3_endpoint, **{k.lower(): v for k, v in S3_KEYS.items()
                                                     if k != "AWS_DEFAULT_REGION"},
                 region_name="us-east-1").create_bucket(Bucket="mlflow")
    with start_mlflow_server(tmp_path_factory.mktemp("mlflow-tiny"), "s3://mlflow/artifacts",
                             {**S3_KEYS, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint}) as uri:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("MLFLOW_TRACKING_URI", uri)
            env.setenv("OBLIVIO_HOME", str(tmp_path_factory.mktemp("tiny-home")))
            for key in (*S3_KEYS, "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
                env.delenv(key, raising=False)  # the client reaches S3 only through MLflow
            register_original("tiny", model_dir)
            command = [sys.executable, "-c", RUN, str(data)]
            killed = kill_at_capture(command)
            [abandoned] = client().search_runs(
                [connect()], f"tags.`{RUNNER_TAG}` = '{killed['runner']}'")
            killed["versions"] = [r["version"] for r in lineage("tiny")]
            rerun = subprocess.run(command, env=os.environ.copy(), capture_output=True,
                                   text=True, timeout=600)
        yield {"uri": uri, "s3": s3_endpoint, "killed": killed, "abandoned": abandoned,
               "rerun": rerun}


@pytest.fixture()
def on_tiny(tiny: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """tiny's server as this test's tracking URI; the model's name."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tiny["uri"])
    monkeypatch.setenv("OBLIVIO_HOME", str(tmp_path / "home"))
    for key in (*S3_KEYS, "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    connect()
    return "tiny"


def test_a_killed_run_takes_its_steps_down_and_is_closed_by_the_next(tiny: dict,
                                                                      on_tiny: str) -> None:
    """A run killed with SIGKILL: its steps go down with it, its MLflow run does not stay
    RUNNING forever, and a re-run registers exactly one new version. Real processes, a real
    SIGKILL."""
    left = tiny["killed"]["left"]
    assert not left, f"steps outlived their killed runner: {left}"
    assert tiny["abandoned"].info.status == "RUNNING"  # what a kill leaves behind
    assert tiny["killed"]["versions"] == ["1"]
    assert tiny["rerun"].returncode == 0, tiny["rerun"].stderr[-2000:]
    assert "KILLED: the oblivio run that ran it is gone" in tiny["rerun"].stderr
    closed = client().get_run(tiny["abandoned"].info.run_id)
    assert closed.info.status == "KILLED"
    assert "it was killed" in closed.data.tags["oblivio.failure"]
    assert [r["version"] for r in lineage(on_tiny)] == ["1", "2"]  # one, from the re-run


def test_shards_and_s3_give_what_one_pass_gives(tiny: dict, on_tiny: str, trained_rgb,
                                                tmp_path: Path) -> None:
    """tiny's version 2, made over 2 shards (ParallelFor fan-out, Collected reduce, under
    kfp's local runner) on the S3-backed server, against the same steps run here in one pass
    (one capture per sample list, one prediction of the training split): the same weights, up
    to float sums, the same evaluation; the lineage, and the models in the bucket."""
    from oblivio.evaluation.evaluate import evaluate_unlearned
    from oblivio.evaluation.gates import flat_metrics
    from oblivio.steps import capture_step, project_step, sample_step, subspaces_step

    data, model_dir = str(trained_rgb[0]), str(trained_rgb[1])
    rows = lineage(on_tiny)
    assert [(r["version"], r["parent"]) for r in rows] == [("1", None), ("2", "1")]
    assert rows[1]["aliases"] == ["candidate", "champion"] and rows[1]["gate"] == "passed"
    assert rows[1]["forgotten_classes"] == "1" and "forget_test_acc" in rows[1]["metrics"]
    sharded = oblivio.load_model(f"models:/{on_tiny}@{CHAMPION}")  # through the server's proxy
    assert sharded.config["provenance"]["method"] == "projection"

    one = tmp_path / "one"
    sample_step(model_dir, data, "1", str(one / "samples"), SMALL["retain_per_class"],
                SMALL["forget_samples"], SMALL["val_per_class"], SMALL["val_forget_samples"])
    for which in ("retain", "forget"):
        capture_step(model_dir, data, str(one / "samples" / f"{which}.parquet"),
                     str(one / f"{which}.safetensors"), device="cpu")
    subspaces_step(str(one / "retain.safetensors"), str(one / "forget.safetensors"),
                   str(one / "subspaces.safetensors"))
    project_step(model_dir, data, str(one / "subspaces.safetensors"), str(one / "samples"),
                 str(one / "model"), device="cpu")
    unsharded = oblivio.load_model(one / "model")
    assert sharded.config["provenance"]["alpha"] == unsharded.config["provenance"]["alpha"]
    for key, value in unsharded.state_dict().items():
        torch.testing.assert_close(sharded.state_dict()[key], value, rtol=1e-4, atol=1e-5)
    expected = flat_metrics(evaluate_unlearned(str(one / "model"), data, tmp_path / "report",
                                               model_dir, "cpu"))
    metrics = client().get_run(client().get_model_version(on_tiny, "2").run_id).data.metrics
    for key in ("forget_test_acc", "retain_train_acc", "mia_efficacy_confidence"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6)

    s3 = boto3.client("s3", endpoint_url=tiny["s3"], region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket="mlflow", Prefix="artifacts/") for o in page.get("Contents", [])]
    weights = [k for k in keys if k.endswith("model.safetensors")]
    assert len(weights) >= 2, keys  # the original and the unlearned version, in the bucket
    assert any(k.endswith("report/report.md") for k in keys)


def test_shadows_aim_match_and_gate_the_request(tracked: str, trained_rgb,
                                               tmp_path: Path) -> None:
    """One parameter, shadows_uri, reaches the three steps that read it: the first checks
    them, match aims at them, the evaluation judges against them and promotion obeys."""
    from oblivio.evaluation.gates import SHADOWS_TPR
    from oblivio.evaluation.pool import trained_like
    from oblivio.evaluation.shadows import build_shadows
    from oblivio_pipeline.local import run_local

    data, model_dir = trained_rgb
    register_original("shadowed", model_dir)
    shadows = tmp_path / "shadows"
    build_shadows(str(data), shadows, *trained_like(str(model_dir)), k=4, device="cpu",
                  progress=False)
    request = tmp_path / "request.txt"
    request.write_text("rgb/train/0000\nrgb/train/0061\nrgb/train/0122\n")
    out = runner.invoke(app, ["run", "--model-name", "shadowed", "--data", str(data),
                              "--forget-ids", str(request), "--shadows", str(tmp_path)])
    assert out.exit_code == 2 and "holds no shadows" in out.stderr
    assert [r["version"] for r in lineage("shadowed")] == ["1"]  # checked before any step
    result = run_local("shadowed", None, str(data), device="cpu", forget_ids=str(request),
                       instance_max_steps=STEPS, shadows_uri=str(shadows), **LENIENT)
    provenance = oblivio.load_model("models:/shadowed/2").config["provenance"]
    assert provenance["params"]["targets"] == "shadows" and "target_phi_mean" in provenance
    row = lineage("shadowed")[1]
    run_id = client().get_model_version("shadowed", "2").run_id
    report = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="report/report.json")).read_text())
    assert client().get_run(run_id).data.metrics[SHADOWS_TPR] == pytest.approx(
        report["shadows"]["model"]["all"]["tpr_at_1pct_fpr"])
    # the other gates are lenient here: the shadows alone decide, as promotion reads them
    honoured = not report["shadows"]["reasons"]
    assert (row["gate"] == "passed") == honoured == ("champion" in row["aliases"])
    assert honoured or "shadows" in row["gate"], (row["gate"], result["gate"])


def test_gates_and_the_deletion_rule(tracked: str, trained_rgb) -> None:
    _, model_dir = trained_rgb
    register_original("gated", model_dir)  # version 1, knows every class
    with mlflow.start_run(experiment_id=connect()) as run:
        mlflow.log_metrics({"forget_test_acc": 0.0, "retain_test_acc": 0.90,
                            "original_retain_test_acc": 0.91, "mia_efficacy_confidence": 0.99})
        log_model_version(model_dir, "gated", Lineage("projection", forgotten_classes=[3],
                                                      parent_version="1"))
    with mlflow.start_run(experiment_id=connect()):
        mlflow.log_metrics({"forget_test_acc": 0.2, "retain_test_acc": 0.90,
                            "original_retain_test_acc": 0.91, "mia_efficacy_confidence": 0.99})
        log_model_version(model_dir, "gated", Lineage("projection", forgotten_classes=[3],
                                                      parent_version="1"))
    result = runner.invoke(app, ["promote", "gated", "3"])
    assert result.exit_code == 2 and "fails the gates" in result.stderr
    assert "forget accuracy 0.2000 > 0.01" in result.stderr
    assert "is now champion" in promote("gated", "2", Gates())
    result = runner.invoke(app, ["promote", "gated", "1"])  # a rollback that un-forgets
    assert result.exit_code == 2
    assert "still knows what champion version 2 has forgotten (class 3)" in result.stderr
    assert client().get_model_version_by_alias("gated", CHAMPION).version == "2"
    assert run.info.run_id
    # forgotten on the test split, back once batch norm is re-estimated on kept data
    with mlflow.start_run(experiment_id=connect()):
        mlflow.log_metrics({"forget_test_acc": 0.0, "retain_test_acc": 0.90,
                            "original_retain_test_acc": 0.91, "mia_efficacy_confidence": 0.99,
                            "reestimated_forget_test_acc": 0.3})
        log_model_version(model_dir, "gated", Lineage("projection", forgotten_classes=[3],
                                                      parent_version="1"))
    result = runner.invoke(app, ["promote", "gated", "4"])
    assert result.exit_code == 2
    assert "forget accuracy 0.3000 > 0.01 once batch norm is re-estimated" in result.stderr
    result = runner.invoke(app, ["promote", "gated", "4", "--max-reestimated-forget-acc", "0.5"])
    assert result.exit_code == 0, result.stderr
    assert client().get_model_version_by_alias("gated", CHAMPION).version == "4"


def test_exit_handler_records_a_failed_run(tracked: str) -> None:
    from oblivio.tracking.runs import finish_run, run_id_of, start_run

    run_id = start_run("job-42", "oblivio-class-forgetting-42", {"forget_classes": "3"})
    finish_run("job-42", "FAILED", "Task capture-activations failed: out of memory")
    run = client().get_run(run_id)
    assert run.info.status == "FAILED" and run_id_of("job-42") == run_id
    assert "out of memory" in run.data.tags["oblivio.failure"]
    finish_run("job-never-started", "FAILED", "before any MLflow step")  # nothing to close


def test_unreachable_mlflow_is_one_error_and_registers_nothing(trained_rgb, tmp_path: Path,
                                                               monkeypatch) -> None:
    data, _ = trained_rgb
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OBLIVIO_HOME", str(tmp_path / "home"))
    started = time.perf_counter()
    result = runner.invoke(app, ["run", "--data", str(data), "--forget-classes", "1"])
    assert result.exit_code == 2 and time.perf_counter() - started < 30
    assert result.stderr.startswith("error: MLflow at http://127.0.0.1:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "home" / "kfp").exists()
    assert runner.invoke(app, ["lineage", "x"]).exit_code == 2


def test_run_rejects_an_unknown_class_before_any_step(tracked: str, trained_rgb,
                                                       tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    register_original("strict", model_dir)
    result = runner.invoke(app, ["run", "--model-name", "strict", "--data", str(data),
                                 "--forget-classes", "9"])
    assert result.exit_code == 2 and result.stderr.startswith("error: class 9 out of range")
    assert len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(app, ["run", "--model-name", "strict", "--data", str(data),
                                 "--forget-classes", "1", "--class-method", "ssd"])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: class method must be projection or contrast, "
                                     "got 'ssd'")
    assert not (tmp_path / "home" / "kfp").exists()
    assert [r["version"] for r in lineage("strict")] == ["1"]
