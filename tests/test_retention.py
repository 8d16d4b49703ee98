"""Promotion is deletion-monotone against the ledger, also when a batch honours a request while
a promotion is under way; versions that still know honoured data are tagged and purged."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

import oblivio
from oblivio.cli import app
from oblivio.deletion import promotion
from oblivio.errors import OblivioError
from oblivio.ledger.store import Ledger
from oblivio.tracking.registry import CHAMPION, Lineage, client, log_model_version
from oblivio.tracking.store import connect

runner = CliRunner()
PASSING = {"forget_test_acc": 0.0, "retain_test_acc": 0.90, "original_retain_test_acc": 0.91,
           "mia_efficacy_confidence": 0.99}


def unlearned(model_dir: Path, name: str, classes: list[int]) -> str:
    with mlflow.start_run(experiment_id=connect()):
        mlflow.log_metrics(PASSING)
        return str(log_model_version(model_dir, name, Lineage(
            "projection", forgotten_classes=classes, parent_version="1")).version)


def test_promotion_never_leaves_a_champion_that_misses_an_honoured_request(
        registered: str, trained_rgb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    model_dir = trained_rgb[1]
    v2 = unlearned(model_dir, registered, [1])  # honours the class-1 request
    v3 = unlearned(model_dir, registered, [2])  # does not
    ledger = Ledger()
    request, _ = ledger.submit(registered, "classes", ["1"])
    batch = ledger.claim(registered, "batch-run", timedelta(hours=1))

    # while version 3 is being promoted (checked against champion 1: no conflict), the batch
    # promotes version 2 and honours the request; version 3 must not stay champion
    real = promotion._refuse_unhonoured

    def concurrent(name: str, target, verb: str) -> None:
        real(name, target, verb)
        if verb == "refused":  # passed; the other two act before the alias is set
            client().set_registered_model_alias(name, CHAMPION, v2)
            ledger.honour(batch.claim, "classes", v2)

    monkeypatch.setattr(promotion, "_refuse_unhonoured", concurrent)
    with pytest.raises(OblivioError, match=rf"reverted: version {v3} still knows what honoured "
                                           rf"deletion request\(s\) {request.id} removed"):
        promotion.promote(registered, v3)
    assert str(client().get_model_version_by_alias(registered, CHAMPION).version) == v2
    monkeypatch.setattr(promotion, "_refuse_unhonoured", real)
    # afterwards the ledger alone refuses it, and a rollback to the original
    for version in (v3, "1"):
        result = runner.invoke(app, ["promote", registered, version])
        assert result.exit_code == 2 and "still knows what" in result.stderr

    # purge: the versions that still know the class are tagged, then their weights deleted
    dry = runner.invoke(app, ["purge", "--model-name", registered, "--dry-run"])
    assert dry.exit_code == 0 and "version    1  would delete" in dry.stdout
    assert f"version    {v3}  would delete  knows {request.id}" in dry.stdout
    assert client().get_model_version(registered, "1").tags["oblivio.knows_deleted"] == request.id
    oblivio.load_model(f"models:/{registered}/1")  # a dry run deletes nothing
    done = runner.invoke(app, ["purge", "--model-name", registered])
    assert done.exit_code == 0 and done.stdout.count("purged 20") == 2, done.output
    for version in ("1", v3):
        assert client().get_model_version(registered, version).tags["oblivio.purged"]
        with pytest.raises(Exception):  # noqa: B017 -- any failure: the weights are gone
            oblivio.load_model(f"models:/{registered}/{version}")
    assert oblivio.load_model(f"models:/{registered}@champion") is not None
    assert len(client().search_model_versions(f"name = '{registered}'")) == 3  # kept for audit


def test_purge_erases_the_id_lists_older_runs_logged(
        registered: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs of an older oblivio logged a deletion request's ids as ``samples/forget.parquet``;
    purge erases every such list whose ids the ledger holds for the model, and no other."""
    from oblivio.data.sample_ids import write_sample_ids
    from oblivio.deletion.purge import erase_run_copies

    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger()
    ledger.submit(registered, "ids", ["train-1", "train-2"])
    runs = {}
    for name, ids in (("ours", ["train-1", "train-2"]), ("other", ["train-9"])):
        samples = tmp_path / name / "samples"
        samples.mkdir(parents=True)
        write_sample_ids(str(samples / "forget.parquet"), ids)
        with mlflow.start_run(experiment_id=connect()) as run:
            mlflow.log_param("forget_ids_uri", f"/requests/{name}.txt")
            mlflow.log_artifacts(str(samples), "samples")
        runs[name] = run.info.run_id
    receipts = erase_run_copies(ledger, registered)
    assert [r["where"].endswith(f"{runs['ours']}/artifacts/samples/forget.parquet")
            for r in receipts] == [True]
    assert receipts[0]["objects"][0]["count"] == 2
    assert client().list_artifacts(runs["ours"], "samples") == []
    assert [a.path for a in client().list_artifacts(runs["other"], "samples")] == [
        "samples/forget.parquet"]  # ids the ledger does not hold for this model: not ours
    assert [e.event for e in ledger.events()][-1] == "purged"
    assert erase_run_copies(ledger, registered) == []  # a second purge finds nothing
