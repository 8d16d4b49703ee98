"""Per-example evidence against a pool of retrains, on the memorising world (noise images with
random labels: every forget image is learnt only by memorising it). The controls: the original
(trained with the request, nothing unlearned) must fail, a retrain outside the pool must pass."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm
from typer.testing import CliRunner

from oblivio.cli import app
from oblivio.data.sample_ids import write_sample_ids
from oblivio.errors import OblivioError
from oblivio.evaluation.pool import build_pool, gdp_epsilon
from oblivio.training import Recipe, train_to_dir

runner = CliRunner()


@pytest.fixture(scope="module")
def pool(memorised: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A pool of 2 retrains, 2 models trained with the request and 1 held retrain, built by the
    CLI as a user would (the recipe read from the original); and one more retrain, seed 7."""
    root = tmp_path_factory.mktemp("pool")
    result = runner.invoke(app, ["pool", "build", "--original", str(memorised["saw"]),
                                 "--data", str(memorised["data"]), "--forget-ids",
                                 str(memorised["ids"]), "--out", str(root / "pool"), "--k", "2",
                                 "--held", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    recipe = Recipe(epochs=20, batch_size=16, lr=0.05, flip=False, label_smoothing=0.0,
                    weight_decay=0.0, seed=7)
    train_to_dir(str(memorised["data"]), "resnet18", str(root / "retrain7"), recipe,
                 exclude_ids=str(memorised["ids"]), device="cpu", progress=False)
    return {**memorised, "pool": root / "pool", "retrain7": root / "retrain7"}


def evaluate(pool: dict, model: Path, out: Path) -> dict:
    result = runner.invoke(app, ["evaluate", "--model", str(model), "--original",
                                 str(pool["saw"]), "--data", str(pool["data"]), "--forget-ids",
                                 str(pool["ids"]), "--oracle-pool", str(pool["pool"]), "--out",
                                 str(out), "--device", "cpu", "--svc-samples", "40"])
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text())


def test_gdp_epsilon_solves_the_privacy_profile() -> None:
    assert gdp_epsilon(0.0) == 0.0
    values = gdp_epsilon(np.array([0.5, 1.0, 2.0, 4.0])).tolist()
    assert values == sorted(values) and values[0] > 0
    for mu, eps in zip((0.5, 1.0, 2.0, 4.0), values):  # delta(eps) is the delta asked for
        delta = norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2)
        assert delta == pytest.approx(1e-5, rel=1e-6)


def test_the_original_fails_the_pool_and_a_retrain_passes(pool: dict, tmp_path: Path) -> None:
    original = evaluate(pool, pool["saw"], tmp_path / "original")
    evidence = original["pool"]
    assert evidence["memorised"] >= 12  # most of 24 noise images are memorised
    mem = evidence["model"]["memorised"]
    held = evidence["held_retrains"][0]["memorised"]
    assert mem["tpr_at_1pct_fpr"] >= 0.3 > held["tpr_at_1pct_fpr"] + 0.02
    assert mem["klom_mean"] > 5 * held["klom_mean"]
    assert mem["epsilon_mean"] > 2 * held["epsilon_mean"]
    assert not original["gate"]["passed"]
    assert any("still look trained on" in r for r in original["gate"]["reasons"])
    assert "Gate: failed" in (tmp_path / "original" / "report.md").read_text()

    retrain = evaluate(pool, pool["retrain7"], tmp_path / "retrain")
    assert retrain["pool"]["reasons"] == []
    assert retrain["pool"]["model"]["memorised"]["tpr_at_1pct_fpr"] <= 0.05
    assert not any("trained on" in r for r in retrain["gate"]["reasons"])


def test_a_pool_judges_only_its_own_request(pool: dict, tmp_path: Path) -> None:
    other = tmp_path / "other.parquet"
    write_sample_ids(other, [f"noise/train/{i:03d}" for i in range(30, 40)])
    result = runner.invoke(app, ["evaluate", "--model", str(pool["saw"]), "--data",
                                 str(pool["data"]), "--forget-ids", str(other), "--oracle-pool",
                                 str(pool["pool"]), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "was built for another request" in result.stderr
    assert not (tmp_path / "r").exists()
    result = runner.invoke(app, ["evaluate", "--model", str(pool["saw"]), "--data",
                                 str(pool["data"]), "--forget-classes", "1", "--oracle-pool",
                                 str(pool["pool"]), "--out", str(tmp_path / "r")])
    assert result.stderr.strip() == ("error: an oracle pool judges a deletion request "
                                     "(--forget-ids), not classes")


def test_an_unfinished_pool_is_named_and_resumed(pool: dict, tmp_path: Path) -> None:
    copy = tmp_path / "pool"
    shutil.copytree(pool["pool"], copy)
    shutil.rmtree(copy / "held-0")
    result = runner.invoke(app, ["evaluate", "--model", str(pool["saw"]), "--data",
                                 str(pool["data"]), "--forget-ids", str(pool["ids"]),
                                 "--oracle-pool", str(copy), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "unfinished (held-0 missing)" in result.stderr
    before = json.loads((copy / "pool.json").read_text())["seconds"]
    recipe = Recipe(epochs=20, batch_size=16, lr=0.05, flip=False, label_smoothing=0.0,
                    weight_decay=0.0)
    plan = build_pool(str(pool["data"]), pool["ids"], copy, "resnet18", recipe, k=2, held=1,
                      device="cpu", progress=False)
    assert {k: v for k, v in plan["seconds"].items() if k != "held-0"} == {
        k: v for k, v in before.items() if k != "held-0"}  # only the missing member trained
    assert (copy / "held-0" / "metrics.json").exists()
    with pytest.raises(OblivioError, match="another request or recipe"):
        build_pool(str(pool["data"]), pool["ids"], copy, "resnet18",
                   Recipe(epochs=3, batch_size=16), k=2, held=1, device="cpu", progress=False)


def test_pool_build_refuses_before_training(pool: dict, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("noise/train/000\nnoise/train/999\n")
    for args, message in (
            (["--forget-ids", str(foreign), "--out", str(tmp_path / "p1")], "noise/train/999"),
            (["--forget-ids", str(pool["ids"]), "--out", str(tmp_path / "p2"), "--k", "1"],
             "--k"),
            (["--forget-ids", str(pool["ids"]), "--out", str(pool["never"])],
             "holds no pool")):
        result = runner.invoke(app, ["pool", "build", "--original", str(pool["saw"]), "--data",
                                     str(pool["data"]), *args])
        assert result.exit_code == 2, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p1").exists() and not (tmp_path / "p2").exists()


def test_every_report_carries_the_gates_verdict(memorised: dict, tmp_path: Path) -> None:
    """Without a pool too: the verdict promotion would give, with its reasons."""
    result = runner.invoke(app, ["evaluate", "--model", str(memorised["never"]), "--original",
                                 str(memorised["saw"]), "--data", str(memorised["data"]),
                                 "--forget-ids", str(memorised["ids"]), "--out",
                                 str(tmp_path / "r"), "--device", "cpu", "--svc-samples", "40"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    gate = report["gate"]
    assert gate["passed"] == (gate["reasons"] == [])
    assert gate["gates"]["instance_max_test_drop"] == 0.005
    assert "pool" not in report
    assert np.isfinite(report["mia_loss_auc"])
