from datetime import timedelta
from pathlib import Path

import mlflow
import pytest

from oblivio.ledger.store import LeaseLost, Ledger
from oblivio.tracking.registry import CHAMPION, Lineage, log_model_version
from oblivio.tracking.store import connect
from oblivio_pipeline.components import complete_batch


def test_completes_a_batch_once_every_part_is_champion(
        registered: str, trained_rgb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger()
    request, _ = ledger.submit(registered, "ids", ["rgb/train/0000"])
    batch = ledger.claim(registered, "kfp:job-1", timedelta(hours=1))
    ledger.record_ids(batch.claim, "digest-of-the-ids")  # what claim_step records
    with mlflow.start_run(experiment_id=connect()):
        log_model_version(trained_rgb[1], registered, Lineage(
            "match", forgotten_batches=["digest-of-the-ids"],
            deletion_batch=f"{batch.id}.ids"), alias=CHAMPION)

    def complete(job: str = "job-1") -> str:
        return complete_batch.python_func(model_name=registered, batch_id=batch.id, token="1",
                                          job_id=job, max_attempts=3, champion_version="2")

    with pytest.raises(LeaseLost):  # a step of another job: refused, nothing written
        complete("job-2")
    assert ledger.get(request.id).state == "claimed"
    assert complete() == "completed"
    assert (ledger.get(request.id).state, ledger.get(request.id).version) == ("honoured", "2")
    assert complete() == "completed"  # a retried step changes nothing
