from datetime import timedelta
from pathlib import Path

import mlflow
import pytest

from oblivio.errors import OblivioError
from oblivio.ledger.store import Ledger
from oblivio.tracking.registry import CHAMPION, Lineage, client, log_model_version
from oblivio.tracking.store import connect
from oblivio_pipeline.components import complete_batch, settle_batch


def test_settles_a_part_by_its_champion_version_or_sends_it_back(
        registered: str, trained_rgb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger()
    classes = ledger.submit(registered, "classes", ["1"], "d1")
    images = ledger.submit(registered, "ids", ["rgb/train/0000"], "d2")
    batch = ledger.claim(registered, "run", timedelta(hours=1))

    def settle(kind: str) -> str:
        return settle_batch.python_func(model_name=registered, batch_id=batch.id, kind=kind,
                                        max_attempts=3)

    # what the classes' run leaves: a version registered under the part's key, champion
    with mlflow.start_run(experiment_id=connect()):
        log_model_version(trained_rgb[1], registered, Lineage(
            "projection", forgotten_classes=[1], deletion_batch=f"{batch.id}.classes"),
            alias=CHAMPION)
    assert settle("classes") == "2"
    assert (ledger.get(classes.id).state, ledger.get(classes.id).version) == ("honoured", "2")
    assert settle("classes") == "2"  # settled already: nothing to do
    # the images' version failed its gates and stayed a candidate: the batch goes back
    with mlflow.start_run(experiment_id=connect()):
        log_model_version(trained_rgb[1], registered, Lineage(
            "match", gate="failed: test accuracy dropped", deletion_batch=f"{batch.id}.ids"))
    with pytest.raises(OblivioError, match=r"version 3 \(ids\) did not become champion: "
                                           r"failed: test accuracy dropped \(1 request"):
        settle("ids")
    back = ledger.get(images.id)
    assert back.state == "pending" and "did not become champion" in back.last_error
    assert str(client().get_model_version_by_alias(registered, CHAMPION).version) == "2"
    with pytest.raises(OblivioError, match="unknown part 'images'"):
        settle("images")
    # a retry of either step (or the batch's last step) finds the batch failed and fails
    # again: it never finds nothing left to settle and passes, turning the run green
    for again in (lambda: settle("ids"),
                  lambda: complete_batch.python_func(model_name=registered, batch_id=batch.id,
                                                     max_attempts=3, champion_version="2")):
        with pytest.raises(OblivioError, match=rf"batch {batch.id} failed already: version 3 "
                                               r"\(ids\) did not become champion"):
            again()
    assert ledger.get(images.id).attempts == 1 and ledger.get(images.id).state == "pending"


def test_a_champion_moved_while_settling_goes_back_to_one_that_honours(
        registered: str, trained_rgb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger()
    ledger.submit(registered, "classes", ["1"], "d1")
    batch = ledger.claim(registered, "run", timedelta(hours=1))
    with mlflow.start_run(experiment_id=connect()):
        log_model_version(trained_rgb[1], registered, Lineage(
            "projection", forgotten_classes=[1], deletion_batch=f"{batch.id}.classes"),
            alias=CHAMPION)
    real = Ledger.honour

    def racing(self, batch_id: str, kind: str, version: str) -> int:
        # another promotion moves the champion back to version 1 after the check, before
        # the request is recorded honoured
        client().set_registered_model_alias(registered, CHAMPION, "1")
        return real(self, batch_id, kind, version)

    monkeypatch.setattr(Ledger, "honour", racing)
    assert settle_batch.python_func(model_name=registered, batch_id=batch.id, kind="classes",
                                    max_attempts=3) == "2"
    assert str(client().get_model_version_by_alias(registered, CHAMPION).version) == "2"
