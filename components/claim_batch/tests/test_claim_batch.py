from pathlib import Path

import pytest

from oblivio.data.sample_ids import read_sample_ids
from oblivio.ledger.store import Ledger
from oblivio_pipeline.components import claim_batch


def claim(tmp_path: Path) -> tuple:
    return claim_batch.python_func(model_name="m", batch_root=str(tmp_path / "batches"),
                                   lease_minutes=60, max_attempts=3, job_id="job-1")


def test_claims_the_pending_requests_and_writes_their_ids(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    assert claim(tmp_path) == ("", "", "", "", "")  # nothing pending: the rest is skipped
    ledger = Ledger()
    ledger.submit("m", "ids", ["train-2", "train-1"], "d1")
    ledger.submit("m", "classes", ["7"], "d2")
    ledger.submit("m", "ids", ["train-3"], "d3")
    batch_id, classes, ids_uri, classes_key, ids_key = claim(tmp_path)
    assert batch_id.startswith("batch-") and classes == "7"
    assert (classes_key, ids_key) == (f"{batch_id}.classes", f"{batch_id}.ids")
    assert ids_uri == str(tmp_path / "batches" / batch_id / "ids.parquet")
    assert read_sample_ids(ids_uri).to_pylist() == ["train-1", "train-2", "train-3"]
    assert ledger.batch_row(batch_id)["owner"] == "kfp:job-1"
    assert {r.state for r in ledger.find()} == {"claimed"}
    assert claim(tmp_path)[0] == ""  # claimed under a live lease: not twice
