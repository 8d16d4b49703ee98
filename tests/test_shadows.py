"""Shadow models, trained once per training set, judge any deletion request image by image, and
give match a per-image target. On the memorising world (noise images with random labels): the
original must fail, a retrain must pass, and match aimed at the shadows must pass too."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import boto3
import numpy as np
import pytest
from typer.testing import CliRunner

from oblivio.cli import app
from oblivio.deletion.purge import SHADOWS, erase_batch_files
from oblivio.errors import OblivioError
from oblivio.evaluation.gates import SHADOWS_TPR, Gates, check_gates
from oblivio.evaluation.shadows import OUTPUTS_FILE, SHADOWS_FILE, Shadows, erase_images, membership
from oblivio.ledger.store import Ledger

runner = CliRunner()


@pytest.fixture(scope="module")
def shadows(memorised: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """4 shadows of the memorising world's training set, trained by the CLI as a user would."""
    out = tmp_path_factory.mktemp("shadows") / "shadows"
    result = runner.invoke(app, ["pool", "shadows", "--original", str(memorised["saw"]),
                                 "--data", str(memorised["data"]), "--out", str(out), "--k", "4",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return {**memorised, "shadows": out}


def evaluate(world: dict, model: Path, out: Path, shadows: Path | None = None) -> dict:
    result = runner.invoke(app, ["evaluate", "--model", str(model), "--original",
                                 str(world["saw"]), "--data", str(world["data"]), "--forget-ids",
                                 str(world["ids"]), "--shadows", str(shadows or world["shadows"]),
                                 "--out", str(out), "--device", "cpu", "--svc-samples", "40"])
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text())


def test_every_image_is_in_half_the_shadows() -> None:
    keep = membership(1000, 8, 0)
    assert (keep.sum(0) == 4).all()
    assert np.abs(keep.sum(1) - 500).max() < 60  # each shadow sees about half
    assert (keep == membership(1000, 8, 0)).all() and not (keep == membership(1000, 8, 1)).all()


def test_promotion_holds_a_version_evaluated_against_shadows_to_them() -> None:
    """The report's shadows metric is what promotion's gates read from the version's run."""
    passing = {"original_retain_test_acc": 0.9, "retain_test_acc": 0.9, "mia_loss_auc": 0.5,
               "mia_loss_auc_sd": 0.05}
    assert check_gates(passing, Gates()) == []
    assert check_gates({**passing, SHADOWS_TPR: 0.03}, Gates()) == []  # 1% + 0.02
    failures = check_gates({**passing, SHADOWS_TPR: 0.04}, Gates())
    assert len(failures) == 1 and "(shadows)" in failures[0] and "0.040 > 0.030" in failures[0]
    assert check_gates({**passing, SHADOWS_TPR: 0.04}, Gates(pool_max_tpr_excess=0.05)) == []


def test_the_original_fails_its_shadows_and_a_retrain_passes(shadows: dict,
                                                               tmp_path: Path) -> None:
    original = evaluate(shadows, shadows["saw"], tmp_path / "original")
    evidence = original["shadows"]
    assert evidence["k"] == 4 and evidence["negatives_per_example"] == 2
    # 2 shadows a side: wide spreads, and a quarter or more clears 2 (7 to 9 of the 24: the
    # count moves with the CPU's kernels, which train the noise world a little differently)
    assert evidence["memorised"] >= 6
    assert evidence["model"]["memorised"]["tpr_at_1pct_fpr"] >= 0.3
    assert original[SHADOWS_TPR] == evidence["model"]["memorised"]["tpr_at_1pct_fpr"]
    assert not original["gate"]["passed"]
    assert any("(shadows)" in reason for reason in original["gate"]["reasons"])
    assert "Against 4 shadow models" in (tmp_path / "original" / "report.md").read_text()

    retrain = evaluate(shadows, shadows["never"], tmp_path / "retrain")
    assert retrain["shadows"]["reasons"] == []
    assert retrain["shadows"]["model"]["memorised"]["tpr_at_1pct_fpr"] <= 0.03
    assert not any("(shadows)" in reason for reason in retrain["gate"]["reasons"])


def test_match_aimed_at_the_shadows_passes_them(shadows: dict, tmp_path: Path) -> None:
    """Each image's own target (its loss under the shadows that never saw it) takes match where
    a retrain is on memorised images, which rank-matched unseen losses do not."""
    out = tmp_path / "matched"
    result = runner.invoke(app, ["forget", "--model", str(shadows["saw"]), "--data",
                                 str(shadows["data"]), "--forget-ids", str(shadows["ids"]),
                                 "--method", "match", "--targets", "shadows", "--shadows",
                                 str(shadows["shadows"]), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    provenance = json.loads((out / "config.json").read_text())["provenance"]
    assert provenance["params"]["targets"] == "shadows"
    assert not provenance["cap_hit"] and provenance["distance_end"] <= 0.5  # in spreads
    assert provenance["distance_start"] > 1
    # it stopped where the shadow gate passes, not only where the mean came close
    assert provenance["shadows_tpr_start"] > 0.03 >= provenance["shadows_tpr_end"]
    expected = Shadows(shadows["shadows"], str(shadows["data"]), shadows["ids"]).mean_out
    assert provenance["target_phi_mean"] == pytest.approx(expected.mean(), rel=1e-5)
    report = evaluate(shadows, out, tmp_path / "report")
    assert report["shadows"]["reasons"] == []
    assert report["shadows"]["model"]["memorised"]["tpr_at_1pct_fpr"] == pytest.approx(
        provenance["shadows_tpr_end"])


def test_shadows_on_s3_judge_as_the_directory_does(shadows: dict, s3_env: str) -> None:
    """A pipeline's pods read the shadows from S3: shadows.json and outputs.npy suffice."""
    s3 = boto3.client("s3", endpoint_url=s3_env)
    for name in (SHADOWS_FILE, OUTPUTS_FILE):
        s3.upload_file(str(shadows["shadows"] / name), "oblivio", f"shadows/mem/{name}")
    here = Shadows(shadows["shadows"], str(shadows["data"]), shadows["ids"])
    there = Shadows("s3://oblivio/shadows/mem", str(shadows["data"]), shadows["ids"])
    assert there.score_model(shadows["saw"]) == here.score_model(shadows["saw"])
    with pytest.raises(OblivioError, match="holds no shadows"):
        Shadows("s3://oblivio/shadows/absent", str(shadows["data"]), shadows["ids"])


def test_shadows_refuse_what_they_cannot_judge(shadows: dict, tmp_path: Path) -> None:
    base = ["evaluate", "--model", str(shadows["saw"]), "--data", str(shadows["data"]),
            "--out", str(tmp_path / "r")]
    tampered = tmp_path / "other"
    shutil.copytree(shadows["shadows"], tampered)
    plan = json.loads((tampered / SHADOWS_FILE).read_text())
    (tampered / SHADOWS_FILE).write_text(json.dumps({**plan, "train_ids_sha256": "0" * 64}))
    unfinished = tmp_path / "unfinished"
    shutil.copytree(shadows["shadows"], unfinished)
    (unfinished / OUTPUTS_FILE).unlink()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    forget = ["forget", "--model", str(shadows["saw"]), "--data", str(shadows["data"]),
              "--forget-ids", str(shadows["ids"]), "--method", "match", "--out",
              str(tmp_path / "m")]
    for args, message in (
            (base + ["--forget-classes", "1", "--shadows", str(shadows["shadows"])],
             "shadows judge a deletion request"),
            (base + ["--forget-ids", str(shadows["ids"]), "--shadows", str(tampered)],
             "trained on another training split"),
            (base + ["--forget-ids", str(shadows["ids"]), "--shadows", str(unfinished)],
             "unfinished"),
            (base + ["--forget-ids", str(shadows["ids"]), "--shadows", str(shadows["data"])],
             "holds no shadows"),
            (forget + ["--shadows", str(shadows["shadows"])], "go together"),
            (forget + ["--targets", "shadows"], "go together"),
            (["pool", "shadows", "--original", str(shadows["saw"]), "--data",
              str(shadows["data"]), "--out", str(tmp_path / "s"), "--k", "5"], "even k"),
            (["pool", "shadows", "--original", str(shadows["saw"]), "--data",
              str(shadows["data"]), "--out", str(busy), "--k", "4"], "holds no shadows")):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not any((tmp_path / name).exists() for name in ("r", "m", "s"))


def test_an_honoured_batch_erases_what_its_shadows_know_of_it(
        shadows: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch that read the shadows records them as a copy. Once its image request is honoured,
    the batch's end erases the weights of the shadows that trained on the image and its
    columns of the outputs; every other image is judged as before, nothing is trained again,
    and a batch whose request went back erases nothing."""
    copy = tmp_path / "shadows"
    shutil.copytree(shadows["shadows"], copy)
    before = np.load(copy / OUTPUTS_FILE)
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger()
    request, _ = ledger.submit("m", "ids", ["noise/train/000"])
    sent_back = ledger.claim("m", "me", timedelta(hours=1))
    ledger.record_copy(sent_back.claim, SHADOWS, str(copy))
    ledger.fail(sent_back.claim, "ids: the gates failed", 3)
    assert erase_batch_files(ledger, "m") == [{"where": str(copy), "objects": [], "images": 0}]
    assert (np.load(copy / OUTPUTS_FILE) == before).all()
    honoured = ledger.claim("m", "me", timedelta(hours=1))
    ledger.record_copy(honoured.claim, SHADOWS, str(copy))
    ledger.honour(honoured.claim, "ids", "2")
    [receipt] = erase_batch_files(ledger, "m")
    trained_on_it = np.flatnonzero(membership(90, 4, 0)[:, 0])  # 2 of the 4
    assert receipt["images"] == 1 and receipt["shadows_erased"] == trained_on_it.tolist()
    assert {o["name"].split("/")[0] for o in receipt["objects"]} == {
        f"shadow-{m}" for m in trained_on_it}
    assert [m for m in range(4) if (copy / f"shadow-{m}").exists()] == [
        m for m in range(4) if m not in trained_on_it]
    after = np.load(copy / OUTPUTS_FILE)
    assert np.isnan(after[:, :, 0]).all() and (after[:, :, 1:] == before[:, :, 1:]).all()
    last = ledger.events(model_name="m")[-1]
    assert last.event == "purged" and json.loads(last.detail)["what"] == SHADOWS
    assert erase_batch_files(ledger, "m") == []  # erased once
    ledger.submit("m", "ids", ["noise/train/002"])
    gone = ledger.claim("m", "me", timedelta(hours=1))
    ledger.record_copy(gone.claim, SHADOWS, str(tmp_path / "removed-by-its-owner"))
    ledger.honour(gone.claim, "ids", "3")
    assert erase_batch_files(ledger, "m") == [  # nothing there: no batch is held up by it
        {"where": str(tmp_path / "removed-by-its-owner"), "objects": [], "images": 0}]
    with pytest.raises(OblivioError, match="1 of the request's images .* were erased"):
        Shadows(copy, str(shadows["data"]), ["noise/train/001", "noise/train/000"])
    others = [f"noise/train/{i:03d}" for i in range(30, 40)]
    assert Shadows(copy, str(shadows["data"]), others).score_model(shadows["saw"]) == \
        Shadows(shadows["shadows"], str(shadows["data"]), others).score_model(shadows["saw"])
    again = runner.invoke(app, ["pool", "shadows", "--original", str(shadows["saw"]), "--data",
                                str(shadows["data"]), "--out", str(copy), "--k", "4",
                                "--device", "cpu"])
    assert again.exit_code == 0, again.output
    assert not any((copy / f"shadow-{m}").exists() for m in trained_on_it)  # not retrained


def test_shadows_on_s3_forget_every_version(shadows: dict, s3_env: str) -> None:
    """On a versioned bucket, the overwritten outputs' older version is erased too, and every
    version of the erased shadows' weights."""
    s3 = boto3.client("s3", endpoint_url=s3_env)
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned",
                             VersioningConfiguration={"Status": "Enabled"})
    for path in sorted(p for p in shadows["shadows"].rglob("*") if p.is_file()):
        s3.upload_file(str(path), "versioned",
                       f"shadows/{path.relative_to(shadows['shadows'])}")
    receipt = erase_images("s3://versioned/shadows", ["noise/train/005"])
    trained_on_it = np.flatnonzero(membership(90, 4, 0)[:, 5])
    versions = s3.list_object_versions(Bucket="versioned", Prefix="shadows/")
    keys = [v["Key"] for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])]
    assert keys.count(f"shadows/{OUTPUTS_FILE}") == 1  # the old outputs are gone
    assert not any(k.startswith(f"shadows/shadow-{m}/") for m in trained_on_it for k in keys)
    assert any(k.startswith("shadows/shadow-") for k in keys)  # the others stay
    assert f"shadows/{OUTPUTS_FILE}" in {o["name"] for o in receipt["objects"]}
    with pytest.raises(OblivioError, match="were erased"):
        Shadows("s3://versioned/shadows", str(shadows["data"]), ["noise/train/005"])
