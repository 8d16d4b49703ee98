from datetime import timedelta
from pathlib import Path

import mlflow
import pytest
from kfp import dsl

from oblivio.deletion.promotion import register_champion
from oblivio.errors import OblivioError
from oblivio.ledger.store import LeaseLost, Ledger
from oblivio.tracking.registry import CHAMPION, Lineage, client, log_model_version
from oblivio.tracking.store import connect
from oblivio_pipeline.components import complete_batch, settle_batch


def test_settles_a_part_by_its_champion_version_or_sends_only_that_part_back(
        registered: str, trained_rgb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger()
    classes, _ = ledger.submit(registered, "classes", ["1"])
    images, _ = ledger.submit(registered, "ids", ["rgb/train/0000"])
    batch = ledger.claim(registered, "kfp:job-1", timedelta(hours=1))

    def settle(kind: str, job: str = "job-1", token: str = "1") -> str:
        return settle_batch.python_func(model_name=registered, batch_id=batch.id, token=token,
                                        job_id=job, kind=kind, max_attempts=3)

    # what the classes' run leaves: a version registered under the part's key, champion
    with mlflow.start_run(experiment_id=connect()):
        register_champion(trained_rgb[1], registered, Lineage(
            "projection", forgotten_classes=[1], deletion_batch=f"{batch.id}.classes"))
    # another job, or an older claim of this one, writes nothing
    for job, token in (("job-2", "1"), ("job-1", "0")):
        with pytest.raises(LeaseLost, match=f"batch {batch.id} is no longer this run's"):
            settle("classes", job, token)
    assert ledger.get(classes.id).state == "claimed"
    assert settle("classes") == "2"
    assert (ledger.get(classes.id).state, ledger.get(classes.id).version) == ("honoured", "2")
    assert ledger.counted_version(batch.id, "classes") == "2"
    assert settle("classes") == "2"  # settled already: nothing to do
    # the images' version failed its gates and stayed a candidate: only the images go back,
    # and the step returns the champion, so the run goes on to complete_batch
    with mlflow.start_run(experiment_id=connect()):
        log_model_version(trained_rgb[1], registered, Lineage(
            "match", gate="failed: test accuracy dropped", deletion_batch=f"{batch.id}.ids"))
    assert settle("ids") == "2"
    back = ledger.get(images.id)
    assert back.state == "pending" and "did not become champion" in back.last_error
    assert ledger.get(classes.id).state == "honoured"
    assert str(client().get_model_version_by_alias(registered, CHAMPION).version) == "2"
    with pytest.raises(OblivioError, match="unknown part 'images'"):
        settle("images")
    # the batch's last step (and any retry of it) fails the run with the part's reason: it
    # never finds nothing left to settle and passes, turning the run green
    for _ in range(2):
        with pytest.raises(OblivioError, match=rf"batch {batch.id} failed: ids: version 3 "
                                               r"\(ids\) did not become champion"):
            complete_batch.python_func(model_name=registered, batch_id=batch.id, token="1",
                                       job_id="job-1", max_attempts=3, champion_version="2",
                                       receipt=dsl.Artifact(uri=str(tmp_path / "receipt")))
    assert ledger.get(images.id).attempts == 1 and ledger.get(images.id).state == "pending"
    assert ledger.batch_row(batch.id)["state"] == "failed"


def test_a_champion_moved_while_settling_goes_back_to_one_that_honours(
        registered: str, trained_rgb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger()
    ledger.submit(registered, "classes", ["1"])
    batch = ledger.claim(registered, "kfp:job-1", timedelta(hours=1))
    with mlflow.start_run(experiment_id=connect()):
        register_champion(trained_rgb[1], registered, Lineage(
            "projection", forgotten_classes=[1], deletion_batch=f"{batch.id}.classes"))
    real = Ledger.honour

    def racing(self, claim, kind: str, version: str, **evidence) -> int:
        # another promotion moves the champion back to version 1 after the check, before
        # the request is recorded honoured
        client().set_registered_model_alias(registered, CHAMPION, "1")
        return real(self, claim, kind, version, **evidence)

    monkeypatch.setattr(Ledger, "honour", racing)
    assert settle_batch.python_func(model_name=registered, batch_id=batch.id, token="1",
                                    job_id="job-1", kind="classes", max_attempts=3) == "2"
    assert str(client().get_model_version_by_alias(registered, CHAMPION).version) == "2"
