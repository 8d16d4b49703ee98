import json
from pathlib import Path

import mlflow
import pytest
from kfp import dsl

from oblivio.data.sample_ids import read_sample_ids
from oblivio.deletion.batches import run_root_of
from oblivio.deletion.promotion import register_champion
from oblivio.ledger.store import Claim, Ledger
from oblivio.tracking.registry import Lineage
from oblivio.tracking.store import connect
from oblivio_pipeline.components import claim_batch

#: where the Kubeflow backend's driver puts a task's output: <pipeline root>/<pipeline
#: name>/<run id>/<task>/<salt>/<output> (backend/src/v2/driver/driver.go, GenerateOutputURI)
RUN_ROOT = "pipeline-root/oblivio-deletion-batch/job-1"


def claim(tmp_path: Path, model: str, shadows: str = "") -> tuple:
    out = tmp_path / RUN_ROOT / "claim-batch" / "8141" / "claim"
    out.parent.mkdir(parents=True, exist_ok=True)
    return claim_batch.python_func(model_name=model, batch_root=str(tmp_path / "batches"),
                                   lease_minutes=60, max_attempts=3, job_id="job-1",
                                   shadows_uri=shadows, claim=dsl.Artifact(uri=str(out)))


def test_claims_the_pending_requests_and_writes_their_ids(
        registered: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    assert claim(tmp_path, registered) == ("", "", "", "", "", "", "")  # nothing pending
    ledger = Ledger()
    ledger.submit(registered, "ids", ["train-2", "train-1"])
    ledger.submit(registered, "classes", ["3"])
    ledger.submit(registered, "ids", ["train-3"])
    batch_id, token, hold, classes, ids_uri, classes_key, ids_key = claim(
        tmp_path, registered, "s3://oblivio/shadows/fashion")
    assert batch_id.startswith("batch-") and classes == "3" and token == "1"
    assert json.loads(hold) == {"batch_id": batch_id, "owner": "kfp:job-1", "token": 1,
                                "lease_s": 3600.0}
    written = json.loads((tmp_path / RUN_ROOT / "claim-batch/8141/claim").read_text())
    assert written["batch_id"] == batch_id and len(written["requests"]) == 3
    assert "train-1" not in json.dumps(written)
    assert (classes_key, ids_key) == (f"{batch_id}.classes", f"{batch_id}.ids")
    assert ids_uri == str(tmp_path / "batches" / batch_id / "ids.parquet")
    assert read_sample_ids(ids_uri).to_pylist() == ["train-1", "train-2", "train-3"]
    assert ledger.batch_row(batch_id)["owner"] == "kfp:job-1"
    assert {r.state for r in ledger.find()} == {"claimed"}
    assert claim(tmp_path, registered)[0] == ""  # claimed under a live lease: not twice
    # the run's pipeline-root folder and the shadows it reads are recorded, for the batch's end
    ledger.fail(Claim(batch_id, "kfp:job-1", 1), "the run died", 3)
    assert sorted(ledger.unerased_copies(registered)) == [
        (batch_id, "pipeline-root intermediates", str(tmp_path / RUN_ROOT)),
        (batch_id, "shadow models", "s3://oblivio/shadows/fashion")]


def test_a_class_the_champion_already_forgot_is_honoured_at_once(
        registered: str, trained_rgb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request queued before a manual promote (or `oblivio run`) forgot its class: the batch
    honours it by that champion instead of failing on it, and runs only what is left."""
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger()
    met, _ = ledger.submit(registered, "classes", ["1"], "GDPR-1")
    left, _ = ledger.submit(registered, "classes", ["2"])
    with mlflow.start_run(experiment_id=connect()):  # a manual run forgets class 1
        register_champion(trained_rgb[1], registered, Lineage("projection",
                                                              forgotten_classes=[1]))
    batch_id, _, _, classes, _, _, _ = claim(tmp_path, registered)
    assert classes == "2"
    honoured = ledger.get(met.id)
    assert (honoured.state, honoured.version) == ("honoured", "2")
    assert ledger.get(left.id).state == "claimed"
    event = ledger.events(request_id=met.id)[-1]
    assert event.event == "honoured" and '"weights_sha256":"' in event.detail


def test_only_a_run_s_own_folder_is_ever_recorded_for_erasure() -> None:
    """The backend's layout (cut at the run id), kfp.local's (its timestamped run folder);
    anything else records nothing: a guess two levels up once named pytest's whole temporary
    tree, and the batch's last step erased it."""
    backend = "s3://b/root/oblivio-deletion-batch/5f1c-run/claim-batch/8141/claim"
    assert run_root_of(backend, "5f1c-run") == "s3://b/root/oblivio-deletion-batch/5f1c-run"
    run = "/home/u/kfp/oblivio-deletion-batch-2026-12-06-11-35-39-683157"
    assert run_root_of(f"{run}/claim-batch/claim", "1234") == run
    assert run_root_of("/tmp/pytest-of-root/pytest-44/test_x0/claim", "job-1") is None
    assert run_root_of("/tmp/claim", "") is None
