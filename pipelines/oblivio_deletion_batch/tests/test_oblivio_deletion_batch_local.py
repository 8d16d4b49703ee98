"""The deletion-batch pipeline itself, the one compiled for Kubeflow, run end to end by kfp's
local runner (every step a subprocess, against MLflow on SQLite and a SQLite ledger): it claims
a class request and an image request, forgets the class (by contrast: the pipeline's other
class method, beside the projection the other local runs take) and then the images, and
marks each request honoured by its own version; run again with nothing pending, it changes
nothing. The Kubernetes settings are left out (``on_cluster=False``): kfp.local ignores
them."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch
from kfp import local
from typer.testing import CliRunner

import oblivio
from oblivio.cli import app
from oblivio.deletion.intake import submit_request
from oblivio.deletion.verify import verify
from oblivio.ledger.store import Ledger
from oblivio.tracking.registry import CHAMPION, client, lineage
from oblivio.tracking.runs import JOB_TAG, run_id_of, run_key
from oblivio_pipeline.pipelines.oblivio_deletion_batch.pipeline import (
    make_deletion_batch_pipeline,
)
from tests.test_pipeline import LENIENT, SMALL, register_original

pytestmark = pytest.mark.kfp_local  # pipelines under kfp.local: make test-fast leaves them out


def test_the_batch_pipeline_honours_a_class_and_images_once(
        sqlite_mlflow: str, trained_rgb, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    data, model_dir = trained_rgb
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    register_original("local-batch", model_dir)
    (tmp_path / "ids.txt").write_text("rgb/train/0000\nrgb/train/0061\nrgb/train/0122\n")
    ledger = Ledger()
    classes, _ = submit_request(ledger, "local-batch", str(data), classes="1")
    images, _ = submit_request(ledger, "local-batch", str(data),
                               ids_uri=str(tmp_path / "ids.txt"))
    local.init(runner=local.SubprocessRunner(use_venv=False), raise_on_error=True,
               pipeline_root=str(tmp_path / "kfp"))
    pipeline = make_deletion_batch_pipeline(on_cluster=False)
    arguments = {"model_name": "local-batch", "dataset_uri": str(data),
                 "batch_root": str(tmp_path / "batches"), "device": "cpu", "gpu_count": "0",
                 "class_method": "contrast", "instance_max_steps": 5,
                 "instance_max_seconds": 600.0, **SMALL, **LENIENT}
    pipeline(**arguments)

    honoured = {r.id: (r.state, r.version) for r in Ledger().find()}
    assert honoured == {classes.id: ("honoured", "2"), images.id: ("honoured", "3")}
    rows = lineage("local-batch")
    assert [(r["version"], r["parent"]) for r in rows] == [("1", None), ("2", "1"), ("3", "2")]
    assert [r["forgotten_classes"] for r in rows] == ["", "1", "1"]  # images from version 2
    assert rows[2]["aliases"] == ["candidate", "champion"] and rows[1]["aliases"] == []
    assert rows[1]["gate"] == "passed" and "forget_test_acc" in rows[1]["metrics"]
    assert str(client().get_model_version_by_alias("local-batch", CHAMPION).version) == "3"
    # the class part: its method, parameters, report and sample sets in its MLflow run
    v2 = client().get_model_version("local-batch", "2")
    run = client().get_run(v2.run_id)
    assert run.data.params["forget_classes"] == "1"
    assert run.data.params["class_method"] == "contrast"
    assert v2.tags["oblivio.pipeline_run"] and v2.tags["oblivio.method"] == "contrast"
    artifacts = {a.path for a in client().list_artifacts(v2.run_id, "report")}
    assert {"report/report.json", "report/report.html", "report/plots"} <= artifacts
    assert {d.dataset.name for d in run.inputs.dataset_inputs} >= {"retain-samples",
                                                                    "forget-samples"}
    # the registered model is the same network to oblivio and to MLflow's own loader
    ours = oblivio.load_model("models:/local-batch@champion")
    theirs = mlflow.pytorch.load_model("models:/local-batch/3")
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(theirs(x), ours(x), rtol=1e-4, atol=1e-4)
    assert ours.config["provenance"]["forgotten_classes"] == [1]
    # the batch's budget reached the images' method, which ended by its cap, not the budget
    assert ours.config["provenance"]["params"]["max_seconds"] == 600.0
    assert ours.config["provenance"]["deadline_hit"] is False
    shown = CliRunner().invoke(app, ["lineage", "local-batch"])
    assert shown.exit_code == 0 and "champion" in shown.stdout
    # each part logged into its own MLflow run of the job, closed as finished
    batch = Ledger().get(images.id).batch_id
    parts = [client().get_model_version("local-batch", v) for v in ("2", "3")]
    assert [p.tags["oblivio.deletion_batch"] for p in parts] == [f"{batch}.classes",
                                                                  f"{batch}.ids"]
    job = client().get_run(parts[0].run_id).data.tags[JOB_TAG].split("/")[0]
    for part in parts:
        run = client().get_run(run_id_of(run_key(job, part.tags["oblivio.deletion_batch"])))
        assert run.info.run_id == part.run_id and run.info.status == "FINISHED"
    assert Ledger().batch_row(batch)["state"] == "completed"
    # the steps recorded every move and honour: the record verifies, weights included
    verdict = verify(Ledger(), "local-batch")
    assert verdict.ok, verdict.breaks
    events = [e.event for e in Ledger().events()]
    assert events.count("champion") == 3 and events.count("honoured") == 2
    # the run's pipeline-root folder (weights, statistics, the request's ids) was erased by
    # its last step, all but that step's own outputs; the receipt names what went
    (run_root,) = (tmp_path / "kfp").glob("oblivio-deletion-batch-*")
    (kept,) = run_root.iterdir()
    assert kept.name.startswith("complete-batch")
    receipts = [json.loads(e.detail) for e in Ledger().events() if e.event == "purged"]
    assert any(r["what"] == "pipeline-root intermediates" and r["where"] == str(run_root)
               and any(o["name"].endswith("model.safetensors") for o in r["objects"])
               for r in receipts)

    pipeline(**arguments)  # nothing pending: the claim finds nothing and nothing else runs
    assert len(lineage("local-batch")) == 3
    assert {r.state for r in Ledger().find()} == {"honoured"}
