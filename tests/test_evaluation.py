"""Evidence of forgetting: metric definitions, attack directions on models that did and did not
see a set, the report's keys and files, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from oblivio.cli import app
from oblivio.data.sample_ids import write_sample_ids
from oblivio.data.write import write_classes, write_split
from oblivio.evaluation import attacks
from oblivio.evaluation.evaluate import evaluate
from oblivio.evaluation.metrics import CLASS_KEYS, INSTANCE_KEYS
from oblivio.training import Recipe, train_to_dir

runner = CliRunner()


def test_modified_entropy_matches_a_hand_computation() -> None:
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.05, 0.05, 0.9]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    expected = []
    for p, y in zip(probs.tolist(), labels.tolist()):
        value = -(1 - p[y]) * np.log(p[y])
        for i, q in enumerate(p):
            if i != y:
                value -= q * np.log(1 - q)
        expected.append(value)
    np.testing.assert_allclose(attacks.modified_entropy(probs, labels), expected, rtol=1e-12)
    np.testing.assert_allclose(attacks.entropy(probs),
                               [-sum(q * np.log(q) for q in p) for p in probs.tolist()])
    np.testing.assert_allclose(attacks.confidence(probs, labels), [0.7, 0.05])


@pytest.fixture(scope="module")
def memorised(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Noise images with random labels (learnable only by memorising), a model trained to 100%
    on all of train, and one trained without the 24 'forget' rows."""
    root = tmp_path_factory.mktemp("mem")
    rng = np.random.default_rng(0)
    data = root / "data"
    for split, n in (("train", 90), ("test", 90)):
        images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
        write_split(str(data), split, [f"noise/{split}/{i:03d}" for i in range(n)],
                    rng.integers(0, 3, n), images)
    write_classes(str(data), "noise", ["a", "b", "c"])
    forget = [f"noise/train/{i:03d}" for i in range(24)]
    write_sample_ids(root / "forget.parquet", forget)
    recipe = Recipe(epochs=20, batch_size=16, lr=0.05, flip=False, label_smoothing=0.0,
                    weight_decay=0.0)
    train_to_dir(str(data), "resnet18", str(root / "saw"), recipe, device="cpu",
                 progress=False)
    train_to_dir(str(data), "resnet18", str(root / "never"), recipe,
                 exclude_ids=str(root / "forget.parquet"), device="cpu", progress=False)
    return {"data": data, "ids": root / "forget.parquet", "saw": root / "saw",
            "never": root / "never", "root": root}


def test_attacks_rank_a_memorised_set_as_members(memorised: dict) -> None:
    reports = {name: evaluate(str(memorised[name]), str(memorised["data"]),
                              memorised["root"] / f"report-{name}",
                              forget_ids=str(memorised["ids"]), device="cpu", progress=False)
               for name in ("saw", "never")}
    saw, never = reports["saw"], reports["never"]
    assert saw["forget_train_acc"] == 1.0 and never["forget_train_acc"] < 0.6
    print({k: (saw[k], never[k]) for k in INSTANCE_KEYS})
    assert saw["mia_efficacy_confidence"] < 0.3 and never["mia_efficacy_confidence"] > 0.5
    assert saw["mia_efficacy_m_entropy"] < never["mia_efficacy_m_entropy"]
    assert saw["mia_entropy_lr_member_rate"] > never["mia_entropy_lr_member_rate"]
    assert saw["mia_loss_lr_cv_acc"] > 0.8 and abs(never["mia_loss_lr_cv_acc"] - 0.5) < 0.2


def test_report_has_every_key_and_uses_the_model_under_test(memorised: dict,
                                                             tmp_path: Path) -> None:
    data = str(memorised["data"])
    report = evaluate(str(memorised["never"]), data, tmp_path / "r", forget_classes="b",
                      original=str(memorised["saw"]), oracle=str(memorised["never"]),
                      device="cpu", progress=False)
    alone = evaluate(str(memorised["saw"]), data, tmp_path / "alone", forget_classes="b",
                     device="cpu", progress=False)
    assert set(CLASS_KEYS) <= set(report) and report["mode"] == "class"
    assert {f"{k}_gap_to_oracle" for k in CLASS_KEYS} <= set(report)
    assert all(report[f"{k}_gap_to_oracle"] in (0.0, None) for k in CLASS_KEYS)  # model = oracle
    assert report["models"]["original"]["metrics"] == {k: alone[k] for k in CLASS_KEYS}
    assert report["mia_efficacy_confidence"] != alone["mia_efficacy_confidence"]
    assert set(report["directions"]) == set(CLASS_KEYS)
    for name in ("report.json", "report.md", "report.html", "plots/per_class_accuracy.png",
                 "plots/mia_features.png"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    on_disk = json.loads((tmp_path / "r/report.json").read_text())
    assert on_disk["forget_classes"] == [1] and "data:image/png;base64," in (
        tmp_path / "r/report.html").read_text()
    instance = evaluate(str(memorised["saw"]), data, tmp_path / "i",
                        forget_ids=str(memorised["ids"]), device="cpu", progress=False)
    assert set(INSTANCE_KEYS) <= set(instance) and instance["forget_ids_count"] == 24


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--forget-classes", "7"], "error: class 7 out of range"),
        (["--forget-classes", "zebra"], "error: unknown class 'zebra'"),
        ([], "error: give exactly one of --forget-classes and --forget-ids"),
        (["--forget-ids", "IDS_FOREIGN"], "error: 1 sample id(s) not in split 'train'"),
        (["--forget-ids", "IDS_EMPTY"], "names no sample ids"),
        (["--forget-classes", "a", "--oracle", "MISSING"], "error: "),
    ],
)
def test_cli_bad_input_writes_nothing(memorised: dict, tmp_path: Path, args: list[str],
                                      message: str) -> None:
    (tmp_path / "foreign.txt").write_text("noise/train/000\nsomeone/else/1\n")
    (tmp_path / "empty.txt").write_text("\n")
    args = [a.replace("IDS_FOREIGN", str(tmp_path / "foreign.txt"))
            .replace("IDS_EMPTY", str(tmp_path / "empty.txt"))
            .replace("MISSING", str(tmp_path / "nope")) for a in args]
    out = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", "--model", str(memorised["saw"]), "--data",
                                 str(memorised["data"]), "--out", str(out), "--device", "cpu",
                                 *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr.strip() and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_evaluate_prints_the_table(memorised: dict, tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--model", str(memorised["saw"]), "--data",
                                 str(memorised["data"]), "--out", str(tmp_path / "r"),
                                 "--forget-classes", "c", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "| mia_efficacy_confidence |" in result.stdout
    assert json.loads(result.stdout.strip().splitlines()[-1])["out"] == str(tmp_path / "r")
