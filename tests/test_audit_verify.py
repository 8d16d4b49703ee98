"""``oblivio audit verify`` against a real MLflow store (SQLite) and the ledger: it passes on an
honest record, and each ordinary write that rewrites history is caught, one line naming it: the
champion moved in the MLflow UI, a version's lineage tags edited, a request's row changed by
SQL, the champion's weights file replaced. Each tamper is the control that must fail."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import mlflow
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from oblivio.cli import app
from oblivio.deletion.batches import settle
from oblivio.deletion.promotion import register_champion
from oblivio.deletion.verify import verify
from oblivio.ledger.store import Ledger
from oblivio.tracking.registry import CHAMPION, Lineage, client, logged_model_id
from oblivio.tracking.store import connect

runner = CliRunner()


@pytest.fixture()
def honoured(registered: str, trained_rgb) -> tuple[str, str]:
    """Class 1 of ``registered`` forgotten by version 2, honoured through a batch."""
    ledger = Ledger()
    request, _ = ledger.submit(registered, "classes", ["1"], ticket="GDPR-7")
    batch = ledger.claim(registered, "run", timedelta(hours=1))
    with mlflow.start_run(experiment_id=connect()):
        register_champion(trained_rgb[1], registered, Lineage(
            "projection", forgotten_classes=[1], parent_version="1",
            deletion_batch=f"{batch.id}.classes"))
    assert settle(ledger, batch.claim, registered, "classes") == "2"
    return registered, request.id


def verify_cli(model: str) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", "verify", "--model-name", model])
    return result.exit_code, result.stdout


def test_an_honest_record_verifies(honoured: tuple[str, str]) -> None:
    model, _ = honoured
    code, out = verify_cli(model)
    assert code == 0, out
    # champion 1, submitted, claimed, champion 2, registered (counted), honoured
    assert "ok: 6 events, hash chain intact" in out
    assert "champion version 2 honours all 1 honoured requests" in out
    assert "weights sha256" in out and "BREAK" not in out


def test_a_champion_moved_in_the_mlflow_ui_is_caught(honoured: tuple[str, str]) -> None:
    model, request = honoured
    client().set_registered_model_alias(model, CHAMPION, "1")  # as the UI does it
    code, out = verify_cli(model)
    assert code == 1
    assert (f"BREAK: champion of {model} is version 1, but the last move oblivio recorded is "
            "to version 2") in out
    assert f"BREAK: champion version 1 does not honour {request}" in out
    audit = runner.invoke(app, ["audit", "--model-name", model, "--ticket", "GDPR-7"])
    assert audit.exit_code == 1 and "DOES NOT honour it" in audit.stdout
    # promoting the version that already is champion applies the deletion rule too
    again = runner.invoke(app, ["promote", model, "1"])
    assert again.exit_code == 2 and "still knows what honoured deletion request" in again.stderr
    from oblivio.deletion.promotion import restore_honouring_champion

    assert restore_honouring_champion(model) == "2"  # put right by oblivio: recorded
    assert verify_cli(model)[0] == 0


def test_edited_lineage_tags_are_caught(honoured: tuple[str, str]) -> None:
    model, _ = honoured
    # version 1 made to look as if it had forgotten class 1: the audit would believe it
    client().set_model_version_tag(model, "1", "oblivio.forgotten_classes", "1")
    code, out = verify_cli(model)
    assert code == 1 and "BREAK: version 1's lineage tags were changed after event 1" in out
    client().set_model_version_tag(model, "1", "oblivio.forgotten_classes", "")
    assert verify_cli(model)[0] == 0


def test_an_sql_update_of_who_honoured_is_caught(honoured: tuple[str, str]) -> None:
    model, request = honoured
    ledger = Ledger()
    with ledger.engine.begin() as conn:
        conn.execute(text("UPDATE requests SET version = '1' WHERE id = :id"), {"id": request})
    verdict = verify(ledger, model, weights=False)
    assert any(b.startswith(f"request {request} says honoured by version 1") and
               "its history says version 2" in b for b in verdict.breaks), verdict.breaks
    with ledger.engine.begin() as conn:  # and an event rewritten to match: the chain breaks
        conn.execute(text("UPDATE events SET detail = replace(detail, '\"version\":\"2\"', "
                          "'\"version\":\"1\"') WHERE event = 'honoured'"))
    assert any("was altered after it was written" in b
               for b in verify(ledger, model, weights=False).breaks)


def test_replaced_weights_are_caught(honoured: tuple[str, str]) -> None:
    model, _ = honoured
    version = client().get_model_version(model, "2")
    location = client().get_logged_model(logged_model_id(version)).artifact_location
    weights = Path(location.removeprefix("file://")) / "extra_files" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    code, out = verify_cli(model)
    assert code == 1 and "BREAK: champion version 2's weights in the registry hash to" in out


def test_the_weights_file_name_is_the_checkpoints() -> None:
    from oblivio.deletion import verify as check
    from oblivio.models.checkpoint import WEIGHTS_FILE

    assert check.WEIGHTS_FILE == WEIGHTS_FILE


def test_a_report_per_request_for_the_auditors_file(honoured: tuple[str, str],
                                                   tmp_path: Path) -> None:
    import json

    model, request = honoured
    purged = runner.invoke(app, ["purge", "--model-name", model])
    assert purged.exit_code == 0 and "version    1  purged" in purged.stdout
    result = runner.invoke(app, ["audit", "--model-name", model, "--ticket", "GDPR-7",
                                 "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    (entry,) = report["requests"]
    assert entry["request"]["id"] == request and entry["champion_honours"]
    assert [v["version"] for v in entry["versions"]] == ["2"]
    assert len(entry["versions"][0]["weights_sha256"]) == 64
    events = [(e["event"], e["detail"].get("version")) for e in report["timeline"]]
    assert events == [("champion", "1"), ("submitted", None), ("claimed", None),
                      ("champion", "2"), ("registered", "2"), ("honoured", "2")]
    (receipt,) = report["purge_receipts"]
    assert receipt["detail"]["version"] == "1" and receipt["detail"]["knows"] == [request]
    assert report["verification"]["ok"], report["verification"]
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Record verified" in page and request in page and "Purge receipts" in page
    # a request not honoured yet has a report too: no versions, its own timeline
    Ledger().submit(model, "classes", ["2"], ticket="GDPR-8")
    pending = runner.invoke(app, ["audit", "--model-name", model, "--ticket", "GDPR-8",
                                  "--report", str(tmp_path / "pending")])
    assert pending.exit_code == 0, pending.output
    later = json.loads((tmp_path / "pending" / "report.json").read_text())
    assert later["requests"][0]["request"]["state"] == "pending"
    assert "versions" not in later["requests"][0]
    assert "Versions that honour it" in (tmp_path / "pending" / "report.html").read_text()
    # a ticket nobody filed, and a report without a ticket: one line each
    missing = runner.invoke(app, ["audit", "--model-name", model, "--ticket", "T-404",
                                  "--report", str(tmp_path / "other")])
    assert missing.exit_code == 2 and "no request for ticket T-404" in missing.stderr
    assert not (tmp_path / "other").exists()
    bare = runner.invoke(app, ["audit", "--model-name", model, "--class", "1", "--report",
                               str(tmp_path / "other")])
    assert bare.exit_code == 2 and "--report needs --ticket" in bare.stderr
