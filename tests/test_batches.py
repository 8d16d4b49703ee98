"""Deletion requests end to end, as a platform engineer runs them: intake through the CLI, a batch
honoured by the local pipeline against a real ``mlflow server``, the audit; and the faults a
batch must survive (a run taken over, a class part whose gate fails, a run killed after
registering its images' version, MLflow down) without losing a request or honouring one twice.
The images' part is also the test of the pipeline's instance branch (what it registers, and
what ``oblivio run`` then refuses). A class honoured by a batch, and the images after it, is
make demo's sequence (tests/test_demo.py)."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

import oblivio
from oblivio.cli import app
from oblivio.data.sample_ids import ids_sha256
from oblivio.errors import OblivioError
from oblivio.ledger.store import LeaseLost, Ledger
from oblivio.tracking.registry import CHAMPION, client, lineage, model_exists
from tests.servers import free_port
from tests.test_pipeline import LENIENT, SMALL, register_original

pytestmark = pytest.mark.kfp_local  # pipelines under kfp.local: make test-fast leaves them out

runner = CliRunner()
FAST = {**LENIENT, **SMALL, "instance_max_steps": 5, "device": "cpu"}


def submit(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["requests", "submit", "--model-name", "batched", *args])
    return result.exit_code, result.stdout.strip(), result.stderr.strip()


def test_requests_are_honoured_once_through_a_killed_run(
        tracked: str, trained_rgb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from oblivio_pipeline.batch import run_batch

    data, model_dir = trained_rgb
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    register_original("batched", model_dir)
    # nothing pending: no run, no version, exit 0
    nothing = runner.invoke(app, ["batch", "run", "--model-name", "batched", "--data", str(data)])
    assert nothing.exit_code == 0 and nothing.stdout.strip() == "nothing pending"
    ids = ["rgb/train/0000", "rgb/train/0061", "rgb/train/0122"]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    (tmp_path / "test-ids.txt").write_text("rgb/test/0001\n")
    # intake: every refusal is one line and records nothing
    for args, error in (
            (["--classes", "9"], "error: class 9 out of range"),
            (["--ids", str(tmp_path / "test-ids.txt")], "names test-split sample ids"),
            (["--classes", "1", "--ids", str(tmp_path / "ids.txt")], "one of them"),
            (["--classes", "1", "--deadline", "2020-01-01"], "is in the past")):
        code, _, err = submit("--data", str(data), *args)
        assert code == 2 and error in err and len(err.splitlines()) == 1, err
    assert Ledger().find() == []
    code, class_request, _ = submit("--data", str(data), "--classes", "1", "--ticket", "T-1")
    assert code == 0 and class_request.startswith("req-")
    code, ids_request, _ = submit("--data", str(data), "--ids", str(tmp_path / "ids.txt"),
                                  "--ticket", "T-2", "--deadline", "2099-01-01")
    assert code == 0
    # the same request again (a retried intake) is the one recorded, not a second
    code, again, err = submit("--data", str(data), "--classes", "1", "--ticket", "T-1")
    assert (code, again, err) == (0, class_request, f"already recorded: {class_request} (pending)")
    code, _, err = submit("--data", str(data), "--classes", "1,2")
    assert code == 2 and f"class 1 already in request {class_request} (pending)" in err
    code, _, err = submit("--data", str(data), "--classes", "2", "--ticket", "T-1")
    assert code == 2 and f"ticket T-1 is already request {class_request}" in err
    unknown = runner.invoke(app, ["requests", "submit", "--model-name", "nobody", "--data",
                                  str(data), "--classes", "1"])
    assert unknown.exit_code == 2 and "no registered model 'nobody'" in unknown.stderr
    assert not model_exists("nobody")  # an unknown model is never trained
    listed = runner.invoke(app, ["requests", "list", "--state", "pending", "--json"])
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [
        class_request, ids_request]

    # a run whose lease ran out and was taken over stops before its next part, leaving the
    # batch to the run that has it (nothing failed, nothing run)
    def taken_over(self, claim, lease: timedelta) -> None:
        raise LeaseLost(f"batch {claim.batch_id} is no longer this run's (taken over)")

    real_renew = Ledger.renew
    monkeypatch.setattr(Ledger, "renew", taken_over)
    with pytest.raises(LeaseLost):
        run_batch("batched", str(data), lease=timedelta(seconds=1), **FAST)
    monkeypatch.setattr(Ledger, "renew", real_renew)
    time.sleep(1.1)  # its lease runs out
    assert {Ledger().get(r).state for r in (class_request, ids_request)} == {"claimed"}
    assert [r["version"] for r in lineage("batched")] == ["1"]

    # the next run's class part fails its gate: a near no-op edit (a tiny fixed forget alpha)
    # leaves the class recognised, and the strictest gate a fraction allows fails it; its
    # request goes back with the reason, and the images' part starts from the champion it left.
    # That run dies after registering the images' version, before recording it: its lease runs
    # out, and the next run takes the same batch over and finds that version
    real_honour = Ledger.honour

    def killed(self, claim, kind: str, version: str, **evidence) -> int:
        if kind == "ids":
            raise KeyboardInterrupt
        return real_honour(self, claim, kind, version, **evidence)

    gated = {**FAST, "max_forget_acc": 0.0, "alpha_mode": "fixed", "alpha_r": 100.0,
             "alpha_f": 1e-3}
    monkeypatch.setattr(Ledger, "honour", killed)
    with pytest.raises(KeyboardInterrupt):
        run_batch("batched", str(data), lease=timedelta(seconds=3), **gated)
    monkeypatch.setattr(Ledger, "honour", real_honour)
    time.sleep(3.1)  # the dead run's lease runs out
    rows = {r["version"]: r for r in lineage("batched")}
    assert list(rows) == ["1", "2", "3"] and rows["3"]["parent"] == "1"
    assert rows["2"]["gate"].startswith("failed: forget accuracy")
    back = Ledger().get(class_request)
    assert (back.state, back.attempts) == ("pending", 1) and "forget accuracy" in back.last_error
    assert Ledger().get(ids_request).state == "claimed"
    with pytest.raises(OblivioError, match=r"did not become champion: failed: forget accuracy"
                                           r".*1 request\(s\) back to pending"):
        run_batch("batched", str(data), **FAST)  # the batch failed in part: it says so
    assert [r["version"] for r in lineage("batched")] == ["1", "2", "3"]  # no second run
    ledger = Ledger()
    assert ledger.get(ids_request).state == "honoured" and ledger.get(ids_request).version == "3"
    assert ledger.get(class_request).state == "pending"
    assert ledger.batch_row(ledger.get(ids_request).batch_id)["claims"] == 3
    assert str(client().get_model_version_by_alias("batched", CHAMPION).version) == "3"
    # no copy outlives the batch: its ids file and every run's pipeline-root folder are
    # erased, each with a receipt in the ledger's history
    ids_file = tmp_path / "home" / "batches" / ledger.get(ids_request).batch_id / "ids.parquet"
    assert not ids_file.exists()
    assert [p.name for p in (tmp_path / "home" / "kfp").iterdir()] == []
    receipts = [json.loads(e.detail) for e in ledger.events() if e.event == "purged"]
    assert {r["what"] for r in receipts} == {"batch ids file", "pipeline-root intermediates"}
    assert any(o["name"].endswith("model.safetensors") for r in receipts
               for o in r["objects"])

    # the images' part took the pipeline's instance branch: match, judged on the images against
    # unseen ones, the request recorded by digest (the ids stay in the request and the ledger)
    digest = ids_sha256(ids)
    v3 = {r["version"]: r for r in lineage("batched")}["3"]
    assert v3["method"] == "match" and v3["gate"] == "passed"
    assert {"forget_train_acc", "mia_loss_auc"} <= set(v3["metrics"])
    tags = client().get_model_version("batched", "3").tags
    assert tags["oblivio.forget_ids_sha256"] == tags["oblivio.forgotten_batches"] == digest
    assert json.loads(tags["oblivio.params"])["params"]["max_steps"] == 5
    provenance = oblivio.load_model("models:/batched/3").config["provenance"]
    assert (provenance["forgotten_ids_sha256"], provenance["forgotten_ids_count"]) == (digest, 3)
    # `oblivio run` outside a batch: test-split ids, and the same images again, are refused
    # before any step; the ledger names them, and without it the user must (--forgotten-ids)
    def run(*args: str):
        return runner.invoke(app, ["run", "--model-name", "batched", "--data", str(data),
                                   "--forget-ids", *args])

    out = run(str(tmp_path / "test-ids.txt"))
    assert out.exit_code == 2 and "names test-split sample ids" in out.stderr
    forgotten = "3 sample id(s) are already forgotten by models:/batched/3"
    out = run(str(tmp_path / "ids.txt"))
    assert out.exit_code == 2 and forgotten in out.stderr
    with monkeypatch.context() as no_ledger:
        no_ledger.delenv("OBLIVIO_LEDGER_URL")
        out = run(str(tmp_path / "ids.txt"))
        assert out.exit_code == 2 and "recorded by digest" in out.stderr
        out = run(str(tmp_path / "ids.txt"), "--forgotten-ids", str(tmp_path / "ids.txt"))
        assert out.exit_code == 2 and forgotten in out.stderr
    assert [r["version"] for r in lineage("batched")] == ["1", "2", "3"]

    # the audit: by ticket, image and class
    code, again, err = submit("--data", str(data), "--ids", str(tmp_path / "ids.txt"))
    assert (code, again, err) == (0, ids_request, f"already recorded: {ids_request} (honoured)")
    (tmp_path / "more.txt").write_text("\n".join([*ids, "rgb/train/0005"]) + "\n")
    code, _, err = submit("--data", str(data), "--ids", str(tmp_path / "more.txt"))
    assert code == 2 and "already forgotten by batched version 3" in err
    by_sample = json.loads(runner.invoke(app, ["audit", "--model-name", "batched", "--sample-id",
                                               ids[1], "--json"]).stdout)
    assert [e["request"]["id"] for e in by_sample] == [ids_request]
    assert by_sample[0]["first_version"] == "3" and by_sample[0]["champion_honours"]
    assert [v["version"] for v in by_sample[0]["versions"]] == ["3"]
    assert by_sample[0]["versions"][0]["method"] == "match"
    assert "mia_loss_auc" in by_sample[0]["versions"][0]["evidence"]
    # version 2 forgot class 1 but failed its gate: it honours nothing, and the request's
    # audit says it is pending, with the reason
    by_class = json.loads(runner.invoke(app, ["audit", "--model-name", "batched", "--class", "1",
                                              "--json"]).stdout)
    assert [e["request"]["id"] for e in by_class] == [class_request]
    assert by_class[0]["request"]["state"] == "pending" and "versions" not in by_class[0]
    assert "forget accuracy" in by_class[0]["request"]["last_error"]
    text = runner.invoke(app, ["audit", "--model-name", "batched", "--ticket", "T-2"])
    assert text.exit_code == 0 and "champion (version 3) honours it" in text.stdout
    assert "deadline 2099-01-01" in text.stdout and "OVERDUE" not in text.stdout
    missing = runner.invoke(app, ["audit", "--model-name", "batched", "--ticket", "T-404"])
    assert missing.exit_code == 2 and "no request for ticket T-404" in missing.stderr

    # a bad budget claims nothing either
    bad = runner.invoke(app, ["batch", "run", "--model-name", "batched", "--data", str(data),
                              "--instance-max-seconds", "-1"])
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "instance max seconds must be 0 or more" in bad.stderr
    assert (Ledger().get(class_request).attempts, Ledger().held_batches("batched")) == (1, [])
    # MLflow down claims nothing
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    down = runner.invoke(app, ["batch", "run", "--model-name", "batched", "--data", str(data)])
    assert down.exit_code == 2 and down.stderr.startswith("error: MLflow at http://127.0.0.1:")
    assert len(down.stderr.strip().splitlines()) == 1
    back = Ledger().get(class_request)
    assert (back.state, back.attempts) == ("pending", 1)
