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
from oblivio.evaluation import attacks
from oblivio.evaluation.evaluate import evaluate
from oblivio.evaluation.gates import Gates, check_gates
from oblivio.evaluation.metrics import CLASS_KEYS, INSTANCE_KEYS
from oblivio.evaluation.reestimate import REESTIMATE_KEYS
from oblivio.models.inference import accuracy

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
    # the attacks see the evaluation half of the 90 test images (data/unseen.py): 45 unseen
    assert saw["mia_loss_lr_cv_acc"] > 0.7 and abs(never["mia_loss_lr_cv_acc"] - 0.5) < 0.2
    assert saw["forget_train_loss"] < 0.1 < never["forget_train_loss"]
    # the instance gate: the retrain lands in the calibrated band, the model that saw them not
    assert saw["mia_loss_auc"] > 0.9
    assert abs(never["mia_loss_auc"] - 0.5) <= 2.576 * never["mia_loss_auc_sd"]
    saw_metrics = {**saw, "original_retain_test_acc": saw["retain_test_acc"]}
    never_metrics = {**never, "original_retain_test_acc": never["retain_test_acc"]}
    assert check_gates(never_metrics, Gates()) == []
    assert [f for f in check_gates(saw_metrics, Gates()) if "still familiar" in f]
    worse = {**never_metrics, "original_retain_test_acc": never["retain_test_acc"] + 0.01}
    assert check_gates(worse, Gates())[0].startswith("test accuracy dropped 0.0100 > 0.005")
    # stranger than unseen images: fails two-sided, passes one-sided (mislabelled requests);
    # still familiar fails both
    strange = {**never_metrics, "mia_loss_auc": 0.5 - 3 * never["mia_loss_auc_sd"]}
    assert "stranger than unseen images" in check_gates(strange, Gates())[0]
    assert check_gates(strange, Gates(instance_auc_one_sided=True)) == []
    assert check_gates(saw_metrics, Gates(instance_auc_one_sided=True))


def test_familiarity_auc_is_the_mann_whitney_auc_and_its_band_holds_a_retrain() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    forget, unseen = rng.exponential(0.3, 40), np.r_[rng.exponential(0.5, 300), [0.1] * 5]
    forget[:3] = 0.1  # ties count half
    labels = np.r_[np.ones(len(forget)), np.zeros(len(unseen))]
    expected = roc_auc_score(labels, -np.r_[forget, unseen])  # lower loss = member
    assert attacks.familiarity_auc(forget, unseen) == pytest.approx(expected, abs=1e-12)
    # two draws of one distribution: the AUC stays within the 99% band 99% of the time
    draws = [attacks.familiarity_auc(rng.normal(size=16), rng.normal(size=2000))
             for _ in range(2000)]
    inside = np.mean(np.abs(np.array(draws) - 0.5) <= attacks.auc_band(16, 2000))
    assert 0.98 <= inside <= 0.999


def test_report_has_every_key_and_uses_the_model_under_test(memorised: dict,
                                                             tmp_path: Path) -> None:
    data = str(memorised["data"])
    report = evaluate(str(memorised["never"]), data, tmp_path / "r", forget_classes="b",
                      original=str(memorised["saw"]), oracle=str(memorised["never"]),
                      device="cpu", progress=False)
    alone = evaluate(str(memorised["saw"]), data, tmp_path / "alone", forget_classes="b",
                     device="cpu", progress=False)
    keys = CLASS_KEYS + REESTIMATE_KEYS
    assert set(keys) <= set(report) and report["mode"] == "class"
    assert {f"{k}_gap_to_oracle" for k in keys} <= set(report)
    assert all(report[f"{k}_gap_to_oracle"] in (0.0, None) for k in keys)  # model = oracle
    assert report["models"]["original"]["metrics"] == {k: alone[k] for k in keys}
    assert report["mia_efficacy_confidence"] != alone["mia_efficacy_confidence"]
    assert set(report["directions"]) == set(keys)
    assert 0 <= report["reestimated_forget_test_acc"] <= 1
    for name in ("report.json", "report.md", "report.html", "plots/per_class_accuracy.png",
                 "plots/mia_features.png"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    on_disk = json.loads((tmp_path / "r/report.json").read_text())
    assert on_disk["forget_classes"] == [1] and "data:image/png;base64," in (
        tmp_path / "r/report.html").read_text()
    instance = evaluate(str(memorised["saw"]), data, tmp_path / "i",
                        forget_ids=str(memorised["ids"]), device="cpu", progress=False)
    assert set(INSTANCE_KEYS) <= set(instance) and instance["forget_ids_count"] == 24
    assert not set(REESTIMATE_KEYS) & set(instance)


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


@pytest.fixture(scope="module")
def without_class_1(trained_rgb, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``trained_rgb`` recipe retrained without class 1: the relearning reference."""
    from oblivio.training import Recipe, train_to_dir

    data, _ = trained_rgb
    out = tmp_path_factory.mktemp("never1") / "model"
    train_to_dir(str(data), "resnet18", str(out), Recipe(epochs=3, batch_size=32, lr=0.05),
                 exclude_classes="1", device="cpu", progress=False)
    return out


def test_relearn_counts_steps_from_a_copy_and_is_repeatable(trained_rgb,
                                                           without_class_1: Path) -> None:
    from oblivio.data import open_dataset
    from oblivio.evaluation.relearn import RelearnSettings, relearn
    from oblivio.models import load_model

    data, original = trained_rgb
    ds = open_dataset(data)
    train, test = ds.split("train"), ds.split("test")
    settings = RelearnSettings(images=16, batch_size=8, lr=0.01, max_steps=16)
    knows = relearn(load_model(original), train, test, [1], settings, progress=False)
    assert knows["relearn_steps"] == 0 and knows["relearn_curve"][0] >= 0.9
    never = load_model(without_class_1)
    before = {k: v.clone() for k, v in never.state_dict().items()}
    first = relearn(never, train, test, [1], settings, progress=False)
    assert all(torch.equal(before[k], v) for k, v in never.state_dict().items())
    assert list(first["relearn_curve"]) == [0, 1, 2, 4, 8, 16]
    assert first["relearn_curve"][0] == 0.0 < first["relearn_forget_test_acc"]
    assert first["relearn_steps"] is None or first["relearn_steps"] > 0
    assert relearn(never, train, test, [1], settings, progress=False) == first


def test_report_with_relearning_beside_the_oracle(trained_rgb, without_class_1: Path,
                                                  tmp_path: Path) -> None:
    from oblivio.evaluation.relearn import RelearnSettings

    data, original = trained_rgb
    settings = RelearnSettings(images=16, batch_size=8, lr=0.01, max_steps=8)
    report = evaluate(str(without_class_1), str(data), tmp_path / "r", forget_classes="1",
                      original=str(original), oracle=str(without_class_1), device="cpu",
                      progress=False, relearning=settings)
    assert report["models"]["original"]["metrics"]["relearn_steps"] == 0
    assert report["relearn_forget_test_acc_gap_to_oracle"] == 0.0  # the model is the oracle
    assert list(report["models"]["model"]["relearn_curve"]) == [0, 1, 2, 4, 8]
    assert report["relearning"]["max_steps"] == 8
    assert "| relearn_steps |" in (tmp_path / "r/report.md").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--forget-classes", "1", "--relearn-steps", "-1"],
     "error: relearning needs at least one step"),
    (["--forget-ids", "IDS", "--relearn-steps", "8"],
     "error: relearning is measured for forgotten classes"),
])
def test_cli_relearn_bad_input(trained_rgb, tmp_path: Path, args: list[str],
                               message: str) -> None:
    data, original = trained_rgb
    ids = tmp_path / "ids.txt"
    ids.write_text("rgb/train/0000\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", "--model", str(original), "--data", str(data),
                                 "--out", str(out), "--device", "cpu",
                                 *[a.replace("IDS", str(ids)) for a in args]])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_reestimate_finds_a_class_hidden_in_the_statistics(trained_rgb,
                                                           without_class_1: Path) -> None:
    """Running statistics that hide the class (its channels' means raised until every image is
    scored wrong) are what a user's re-estimate replaces: the class comes back. The retrain has
    nothing to bring back, a model without batch norm nothing to re-estimate, and the model
    under test is never changed."""
    from oblivio.data import open_dataset
    from oblivio.evaluation.reestimate import reestimated_accuracy
    from oblivio.models import build, load_model
    from oblivio.models.batchnorm import batchnorm_layers

    data, original = trained_rgb
    ds = open_dataset(data)
    train, test = ds.split("train"), ds.split("test")
    train_forget, test_forget = (train.labels == 1).numpy(), (test.labels == 1).numpy()
    hidden = load_model(original)
    last, head = batchnorm_layers(hidden)[-1], hidden.net.get_classifier().weight
    favours = head[1] - head.mean(0) > 0  # the final channels that raise class 1's logit
    with torch.no_grad():
        last.running_mean.add_(3 * favours * (last.running_var + last.eps).sqrt() / last.weight)
    before = {k: v.clone() for k, v in hidden.state_dict().items()}
    plain = accuracy(hidden, test, np.flatnonzero(test_forget))
    found = reestimated_accuracy(hidden, train, test, train_forget, test_forget)
    assert all(torch.equal(before[k], v) for k, v in hidden.state_dict().items())
    assert plain < 0.5 < found["reestimated_forget_test_acc"]
    assert found["reestimated_retain_test_acc"] > 0.6
    never = reestimated_accuracy(load_model(without_class_1), train, test, train_forget,
                                 test_forget)
    assert never["reestimated_forget_test_acc"] <= 0.05 < never["reestimated_retain_test_acc"]
    no_norm = build("test_vit", ds.num_classes, 3, 16)
    assert reestimated_accuracy(no_norm, train, test, train_forget, test_forget) == {
        k: None for k in REESTIMATE_KEYS}
