import json
from datetime import timedelta
from pathlib import Path

import mlflow
import pytest
from kfp import dsl

from oblivio.deletion.promotion import register_champion
from oblivio.ledger.store import LeaseLost, Ledger
from oblivio.tracking.registry import Lineage
from oblivio.tracking.store import connect
from oblivio_pipeline.components import complete_batch


def test_completes_a_batch_once_every_part_is_champion(
        registered: str, trained_rgb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger()
    request, _ = ledger.submit(registered, "ids", ["rgb/train/0000"])
    batch = ledger.claim(registered, "kfp:job-1", timedelta(hours=1))
    ledger.record_ids(batch.claim, "digest-of-the-ids")  # what claim_step records
    # the run's pipeline-root folder (the backend's layout: <root>/<pipeline>/<run id>/<task>/
    # <salt>/<output>), with the parent's weights and the request's ids, as claim_step records
    run_root = tmp_path / "root" / "oblivio-deletion-batch" / "job-1"
    for name in ("sample-data/11/samples/forget.parquet", "unlearn-instances/12/unlearned/"
                 "model.safetensors", "claim-batch/10/claim"):
        (run_root / name).parent.mkdir(parents=True)
        (run_root / name).write_bytes(b"data")
    ledger.record_copy(batch.claim, "pipeline-root intermediates", str(run_root))
    own = run_root / "complete-batch" / "13"
    own.mkdir(parents=True)
    with mlflow.start_run(experiment_id=connect()):
        register_champion(trained_rgb[1], registered, Lineage(
            "match", forgotten_batches=["digest-of-the-ids"],
            deletion_batch=f"{batch.id}.ids"))

    def complete(job: str = "job-1") -> str:
        return complete_batch.python_func(model_name=registered, batch_id=batch.id, token="1",
                                          job_id=job, max_attempts=3, champion_version="2",
                                          receipt=dsl.Artifact(uri=str(own / "receipt")))

    with pytest.raises(LeaseLost):  # a step of another job: refused, nothing written
        complete("job-2")
    assert ledger.get(request.id).state == "claimed"
    assert (run_root / "sample-data/11/samples/forget.parquet").exists()  # nothing erased
    assert complete() == "completed"
    assert (ledger.get(request.id).state, ledger.get(request.id).version) == ("honoured", "2")
    # every copy the run made is gone, all but this step's own outputs; the receipts name them
    left = sorted(str(p.relative_to(run_root)) for p in run_root.rglob("*"))
    assert left == ["complete-batch", "complete-batch/13", "complete-batch/13/receipt"]
    receipts = json.loads((own / "receipt").read_text())
    erased = {o["name"] for r in receipts for o in r["objects"]}
    assert "sample-data/11/samples/forget.parquet" in erased
    assert "unlearn-instances/12/unlearned/model.safetensors" in erased
    assert ledger.unerased_copies(registered) == []
    assert complete() == "completed"  # a retried step changes nothing
