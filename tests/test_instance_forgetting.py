"""Instance-wise forgetting (L2UL) and the baselines: PGD, importance, the stopping rule, the
direction each method moves a model in, continual requests and bad deletion requests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from oblivio.cli import app
from oblivio.data import open_dataset
from oblivio.data.sample_ids import ids_sha256, read_sample_ids, write_sample_ids
from oblivio.data.write import write_classes, write_split
from oblivio.errors import OblivioError
from oblivio.evaluation.evaluate import evaluate
from oblivio.models import load_model
from oblivio.models.batchnorm import batchnorm_layers, recalibrate_batchnorm
from oblivio.models.forgotten import given_ids
from oblivio.models.inference import accuracy, predict_logits
from oblivio.training import Recipe, train_to_dir
from oblivio.unlearn.baselines.run import forget_with_baseline
from oblivio.unlearn.instances.adversarial import adversarial_bank, l2_pgd
from oblivio.unlearn.instances.importance import anchor_weights, output_sensitivity
from oblivio.unlearn.instances.l2ul import L2ULSettings, forget_instances
from oblivio.unlearn.instances.matching import (
    MatchSettings,
    distance,
    forget_by_matching,
    rank_matched_targets,
)
from oblivio.unlearn.instances.relabel import runner_up
from oblivio.unlearn.tuning import BaselineSettings, other_classes

runner = CliRunner()
MISLABELLED = 8


@pytest.fixture(scope="module")
def mislabelled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Colour classes with 8 training images given a wrong label, and a model that has
    memorised them: the realistic deletion case of images the model learned one by one."""
    root = tmp_path_factory.mktemp("mislabelled")
    rng = np.random.default_rng(1)
    colours = rng.uniform(0.15, 0.85, size=(4, 3))
    data = root / "data"
    for split, n in (("train", 40), ("test", 25)):
        labels = np.repeat(np.arange(4), n)
        pixels = colours[labels][:, None, None, :] + rng.normal(0, 0.1, (len(labels), 12, 12, 3))
        if split == "train":
            labels = labels.copy()
            labels[:MISLABELLED * 20:20] = (labels[:MISLABELLED * 20:20] + 1) % 4
        write_split(str(data), split, [f"c/{split}/{i:03d}" for i in range(len(labels))],
                    labels, (np.clip(pixels, 0, 1) * 255).astype(np.uint8))
    write_classes(str(data), "colours", ["red", "green", "blue", "grey"])
    forget = [f"c/train/{i:03d}" for i in range(0, MISLABELLED * 20, 20)]
    write_sample_ids(root / "forget.parquet", forget)
    (root / "forget.txt").write_text("\n".join(forget) + "\n")
    recipe = Recipe(epochs=25, batch_size=32, lr=0.05, flip=False, label_smoothing=0.0)
    train_to_dir(str(data), "resnet18", str(root / "model"), recipe, device="cpu",
                 progress=False)
    return {"data": data, "model": root / "model", "ids": root / "forget.parquet",
            "ids_txt": root / "forget.txt", "forget": forget, "root": root}


def _forget_acc(model_dir: Path, data: Path, ids: list[str]) -> float:
    train = open_dataset(data).split("train")
    return accuracy(load_model(model_dir), train, train.indices(ids))


def _forget_loss(model_dir: Path, data: Path, ids: list[str]) -> float:
    """Mean cross-entropy of the forget images on their (wrong) training labels."""
    train = open_dataset(data).split("train")
    rows = train.indices(ids)
    logits = predict_logits(load_model(model_dir), train, rows)
    return float(torch.nn.functional.cross_entropy(logits, train.labels[torch.as_tensor(rows)]))


def _test_acc(model_dir: Path, data: Path) -> float:
    return accuracy(load_model(model_dir), open_dataset(data).split("test"))


def test_l2_pgd_stays_in_the_ball_and_reaches_its_target(trained_rgb) -> None:
    data, model_dir = trained_rgb
    model = load_model(model_dir)
    x, y = open_dataset(data).split("train").batch(np.arange(0, 240, 12))
    gen = torch.Generator().manual_seed(0)
    target = other_classes(y, 4, gen)
    assert bool((target != y).all()) and set(target.tolist()) <= {0, 1, 2, 3}
    adv = l2_pgd(model, x, target, eps=4.0, step=0.1, iters=100, gen=gen)
    norms = (adv - x).flatten(1).norm(dim=1)
    assert float(norms.max()) <= 4.0 + 1e-4 and float(adv.min()) >= 0 and float(adv.max()) <= 1
    with torch.no_grad():
        assert float((model(adv).argmax(1) == target).float().mean()) >= 0.9
    small = l2_pgd(model, x, target, eps=0.5, step=0.1, iters=20, gen=gen)
    assert float((small - x).flatten(1).norm(dim=1).max()) <= 0.5 + 1e-4
    assert all(p.grad is None for p in model.parameters())


def test_adversarial_bank_labels_each_example_with_its_target(trained_rgb) -> None:
    data, model_dir = trained_rgb
    model = load_model(model_dir)
    x, y = open_dataset(data).split("train").batch(np.arange(5))
    bank, targets = adversarial_bank(model, x, y, 4, 3, torch.Generator().manual_seed(0),
                                     iters=30, progress=False)
    assert bank.shape == (15, *x.shape[1:]) and len(targets) == 15
    assert bool((targets != y.repeat_interleave(3)).all())
    assert all(p.requires_grad for p in model.parameters()) and not model.training


def test_importance_weights_are_in_unit_range_without_nan(trained_rgb) -> None:
    data, model_dir = trained_rgb
    model = load_model(model_dir)
    x, _ = open_dataset(data).split("train").batch(np.arange(8))
    omega = output_sensitivity(model, x, batch_size=4)
    omega["constant"] = torch.full((3, 3), 0.25, dtype=torch.float64)
    omega["zero"] = torch.zeros(5, dtype=torch.float64)
    weights = anchor_weights(omega)
    for name, w in weights.items():
        assert not torch.isnan(w).any() and float(w.min()) >= 0 and float(w.max()) <= 1, name
    assert bool((weights["constant"] == 1).all()) and bool((weights["zero"] == 1).all())
    fc = weights["net.fc.weight"]
    assert float(fc.min()) == 0.0 and float(fc.max()) == 1.0  # min-max normalised per tensor


def test_l2ul_misclassifies_every_forget_instance_and_keeps_test_accuracy(
        mislabelled: dict, tmp_path: Path) -> None:
    data, model_dir = mislabelled["data"], mislabelled["model"]
    assert _forget_acc(model_dir, data, mislabelled["forget"]) == 1.0  # memorised
    before = _test_acc(model_dir, data)
    # lr 0.01: at the authors' 0.001 the ascent on the last one or two images stalls against
    # the bank's descent on some CPUs' numerics (AMD EPYC: 1 of 8 left after 1,000 epochs);
    # at 0.01 every seed tried there finishes in 12-15 steps with the test accuracy kept
    settings = L2ULSettings(adv_per_instance=4, pgd_iters=30, adv_batch=8, max_epochs=1000,
                            lr=0.01)
    prov = forget_instances(str(model_dir), str(data), str(mislabelled["ids"]),
                            str(tmp_path / "u"), settings, device="cpu", progress=False)
    assert not prov["cap_hit"] and prov["forget_acc"] == 0.0 and prov["steps"] >= 1, prov["steps"]
    assert _forget_acc(tmp_path / "u", data, mislabelled["forget"]) == 0.0
    assert _test_acc(tmp_path / "u", data) >= before - 0.1
    config = json.loads((tmp_path / "u/config.json").read_text())
    assert config["provenance"]["method"] == "l2ul" and config["provenance"]["mode"] == "instance"
    assert (config["provenance"]["forgotten_ids_sha256"], config["provenance"][
        "forgotten_ids_count"]) == (ids_sha256(mislabelled["forget"]), len(mislabelled["forget"]))
    assert config["parent_fingerprint"] == load_model(model_dir).config["weights_sha256"]


def test_l2ul_reports_a_hit_cap_and_relabels(mislabelled: dict, tmp_path: Path) -> None:
    data, model_dir = mislabelled["data"], mislabelled["model"]
    capped = forget_instances(str(model_dir), str(data), str(mislabelled["ids"]),
                              str(tmp_path / "c"),
                              L2ULSettings(ablation="naive", lr=1e-6, max_epochs=1),
                              device="cpu", progress=False)
    assert capped["cap_hit"] and capped["steps"] == 1 and capped["forget_acc"] > 0
    relabel = forget_instances(str(model_dir), str(data), str(mislabelled["ids"]),
                               str(tmp_path / "r"),
                               L2ULSettings(variant="relabel", ablation="naive", lr=0.05,
                                            max_epochs=100), device="cpu",
                               progress=False)
    model = load_model(tmp_path / "r")
    train = open_dataset(data).split("train")
    x, _ = train.batch(train.indices(mislabelled["forget"]))
    with torch.no_grad():
        assert model(x).argmax(1).tolist() == relabel["new_labels"]


def test_continual_requests_start_from_the_current_model(mislabelled: dict,
                                                         tmp_path: Path) -> None:
    data, model_dir = mislabelled["data"], mislabelled["model"]
    first, second = mislabelled["forget"][:4], mislabelled["forget"][4:]
    (tmp_path / "a.txt").write_text("\n".join(first))
    (tmp_path / "b.txt").write_text("\n".join(second))
    settings = L2ULSettings(adv_per_instance=2, pgd_iters=10, adv_batch=8, max_epochs=30)
    forget_instances(str(model_dir), str(data), str(tmp_path / "a.txt"), str(tmp_path / "m1"),
                     settings, device="cpu", progress=False)
    # m1 records its ids by digest only: without the ledger or the files, one line, no model
    with pytest.raises(OblivioError, match=r"has forgotten 4 training images, recorded by "
                                           r"digest .* only: .*--forgotten-ids"):
        forget_instances(str(tmp_path / "m1"), str(data), str(tmp_path / "b.txt"),
                         str(tmp_path / "m2"), settings, device="cpu", progress=False)
    with given_ids([tmp_path / "b.txt"]), pytest.raises(OblivioError, match="is not what"):
        forget_instances(str(tmp_path / "m1"), str(data), str(tmp_path / "b.txt"),
                         str(tmp_path / "m2"), settings, device="cpu", progress=False)
    assert not (tmp_path / "m2").exists()
    with given_ids([tmp_path / "a.txt"]):
        prov = forget_instances(str(tmp_path / "m1"), str(data), str(tmp_path / "b.txt"),
                                str(tmp_path / "m2"), settings, device="cpu", progress=False)
    assert (prov["forgotten_ids_sha256"], prov["forgotten_ids_count"]) == (
        ids_sha256(mislabelled["forget"]), 8)
    assert prov["deletions"] == [{"sha256": ids_sha256(first), "count": 4},
                                 {"sha256": ids_sha256(second), "count": 4}]
    config_text = (tmp_path / "m2" / "config.json").read_text()
    assert not any(i in config_text for i in mislabelled["forget"])  # no id in the model
    assert prov["forget_ids_count"] == 4
    assert prov["forgotten_acc"] == _forget_acc(tmp_path / "m2", data, mislabelled["forget"])
    assert prov["parent"]["weights_sha256"] == load_model(tmp_path / "m1").config[
        "weights_sha256"]
    result = runner.invoke(app, ["forget", "--model", str(tmp_path / "m2"), "--data", str(data),
                                 "--forget-ids", str(tmp_path / "a.txt"),
                                 "--forgotten-ids", str(tmp_path / "a.txt"),
                                 "--forgotten-ids", str(tmp_path / "b.txt"),
                                 "--out", str(tmp_path / "m3")])
    assert result.exit_code == 2 and "already forgotten" in result.stderr
    assert not (tmp_path / "m3").exists()


@pytest.mark.parametrize("method", ["finetune", "neggrad", "neggrad+", "random-label", "ssd"])
def test_each_baseline_moves_the_model_in_its_direction(mislabelled: dict, tmp_path: Path,
                                                        method: str) -> None:
    data, model_dir = mislabelled["data"], mislabelled["model"]
    settings = BaselineSettings(epochs=20 if method == "finetune" else 50, lr=0.01,
                                batch_size=16)
    prov = forget_with_baseline(str(model_dir), str(data), str(tmp_path / "u"), method,
                                ids_file=str(mislabelled["ids"]), settings=settings,
                                device="cpu", progress=False)
    after = _forget_acc(tmp_path / "u", data, mislabelled["forget"])
    assert prov["method"] == method and prov["mode"] == "instance"
    # how far the memorised (wrong) labels were pushed away; accuracy on 8 images is too
    # coarse to see it for the gentle methods, and their trajectories differ between CPUs
    pushed = (_forget_loss(tmp_path / "u", data, mislabelled["forget"])
              - _forget_loss(model_dir, data, mislabelled["forget"]))
    if method == "ssd":  # training-free: parameters only shrink, towards forgetting
        assert prov["dampened_parameters"] > 0 and pushed > 0
        before, now = load_model(model_dir).state_dict(), load_model(tmp_path / "u").state_dict()
        assert all(bool((now[k].abs() <= before[k].abs() + 1e-7).all()) for k in before)
        return
    elif method == "finetune":  # sees only D_r: the wrong labels fade
        assert pushed > 0.1 and after < 1.0
    else:  # stop as soon as no forget instance keeps its label
        assert prov["stopped_early"] and after == 0.0
    assert _test_acc(tmp_path / "u", data) >= 0.7


def test_relabel_gives_mislabelled_images_their_true_class(mislabelled: dict,
                                                         tmp_path: Path) -> None:
    """The images were trained in under the next colour's label; relabel moves each to the
    model's runner-up class (on Fashion-MNIST the true class for 7 in 8: bench/), stops as soon
    as none keeps its wrong label, keeps the test accuracy, and refuses a class request."""
    data, model_dir, forget = mislabelled["data"], mislabelled["model"], mislabelled["forget"]
    result = runner.invoke(app, ["forget", "--model", str(model_dir), "--data", str(data),
                                 "--forget-ids", str(mislabelled["ids"]), "--method", "relabel",
                                 "--out", str(tmp_path / "u")])
    assert result.exit_code == 0, result.output
    prov = load_model(tmp_path / "u").config["provenance"]
    assert prov["method"] == "relabel" and prov["params"]["retain_guard"] == 0.1
    assert prov["stopped_early"] and not prov["cap_hit"] and prov["forgotten_acc"] == 0.0
    assert prov["budget_steps"] == 100  # 8 images, smaller than a batch: a pass is a step
    assert "guard_loss_end" in prov
    train = open_dataset(data).split("train")
    rows = train.indices(forget)
    second = runner_up(load_model(model_dir), train, rows, "cpu")
    predicted = predict_logits(load_model(tmp_path / "u"), train, rows).argmax(1)
    assert int((predicted == second).sum()) >= MISLABELLED - 1
    assert _test_acc(tmp_path / "u", data) >= _test_acc(model_dir, data) - 0.05
    refused = runner.invoke(app, ["forget", "--model", str(model_dir), "--data", str(data),
                                  "--classes", "1", "--method", "relabel",
                                  "--out", str(tmp_path / "c")])
    assert refused.exit_code == 2 and "relabel forgets training images" in refused.stderr
    assert not (tmp_path / "c").exists()


def test_retrain_is_the_oracle_and_class_requests_work(trained_rgb, tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    prov = forget_with_baseline(str(model_dir), str(data), str(tmp_path / "r"), "retrain",
                                classes="1", device="cpu", progress=False)
    assert prov["recipe_from"] == "parent" and prov["recipe"]["epochs"] == 3
    assert prov["forgotten_classes"] == [1] and prov["train_rows"] == 180
    test = open_dataset(data).split("test")
    rows = np.flatnonzero(test.labels.numpy() == 1)
    assert accuracy(load_model(tmp_path / "r"), test, rows) == 0.0
    ng = forget_with_baseline(str(model_dir), str(data), str(tmp_path / "n"), "neggrad+",
                              classes="1", settings=BaselineSettings(epochs=5, batch_size=16),
                              device="cpu", progress=False)
    assert ng["forget_target"] == 0.01 and ng["stopped_early"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--forget-ids", "IDS_TEST"], "names test-split sample ids"),
        (["--forget-ids", "IDS_FOREIGN"], "1 sample id(s) not in split 'train'"),
        (["--forget-ids", "IDS_DUP"], "has duplicate or empty sample ids"),
        (["--forget-ids", "IDS_EMPTY"], "names no sample ids"),
        (["--forget-ids", "IDS_TXT", "--classes", "1", "--method", "neggrad"],
         "give exactly one of --classes and --forget-ids"),
        (["--forget-ids", "IDS_TXT", "--method", "projection"], "projection forgets whole"),
        (["--classes", "1", "--method", "l2ul"], "l2ul forgets training images"),
        (["--forget-ids", "IDS_TXT", "--method", "magic"], "unknown method 'magic'"),
        (["--forget-ids", "IDS_TXT", "--method", "l2ul", "--ablation", "full"],
         "unknown ablation 'full'"),
        (["--forget-ids", "IDS_TXT", "--method", "l2ul", "--lr", "0"],
         "learning rate must be positive"),
        (["--forget-ids", "IDS_TXT", "--lr", "0"], "learning rate, batch size, max steps"),
        (["--forget-ids", "IDS_TXT", "--eps", "2"], "--eps does not apply to --method match"),
        (["--forget-ids", "IDS_TXT", "--method", "l2ul", "--mask", "all"],
         "unknown mask 'all'"),
        (["--forget-ids", "IDS_TXT", "--tolerance", "1.5"], "tolerance must be in [0, 1)"),
        (["--forget-ids", "IDS_TXT", "--method", "neggrad", "--lr", "0"],
         "learning rate and batch size must be positive"),
    ],
)
def test_cli_bad_requests_write_nothing(mislabelled: dict, tmp_path: Path, args: list[str],
                                        message: str) -> None:
    files = {"IDS_TEST": "c/test/001\n", "IDS_FOREIGN": "c/train/001\nelse/1\n",
             "IDS_DUP": "c/train/001\nc/train/001\n", "IDS_EMPTY": "\n\n"}
    for key, text in files.items():
        (tmp_path / f"{key}.txt").write_text(text)
    swap = {**{k: str(tmp_path / f"{k}.txt") for k in files},
            "IDS_TXT": str(mislabelled["ids_txt"])}
    out = tmp_path / "out"
    result = runner.invoke(app, ["forget", "--model", str(mislabelled["model"]), "--data",
                                 str(mislabelled["data"]), "--out", str(out), "--device", "cpu",
                                 *[swap.get(a, a) for a in args]])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_forgets_ids_from_a_text_file(mislabelled: dict, tmp_path: Path) -> None:
    result = runner.invoke(app, ["forget", "--model", str(mislabelled["model"]), "--data",
                                 str(mislabelled["data"]), "--out", str(tmp_path / "u"),
                                 "--forget-ids", str(mislabelled["ids_txt"]), "--device", "cpu",
                                 "--method", "l2ul", "--adv-per-instance", "2", "--pgd-iters", "10",
                                 "--max-epochs", "50", "--lr", "0.01"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["method"] == "l2ul" and summary["forget_ids_count"] == MISLABELLED
    # the run ends when every image is forgotten or at the cap (whichever these numerics
    # reach first), and the summary is the written model's
    assert summary["cap_hit"] == (summary["forget_acc"] > 0) and summary["forget_acc"] < 1.0
    assert _forget_acc(tmp_path / "u", mislabelled["data"], mislabelled["forget"]) == \
        summary["forget_acc"]


def test_rank_matched_targets_keep_the_order_and_take_the_unseen_shape() -> None:
    forget = torch.tensor([0.3, 0.1, 0.2, 0.05])
    unseen = torch.linspace(0, 4, 401)
    targets = rank_matched_targets(forget, unseen)
    assert torch.equal(torch.argsort(targets), torch.argsort(forget))
    assert torch.allclose(torch.sort(targets).values, torch.tensor([0.5, 1.5, 2.5, 3.5]),
                          atol=1e-6)  # the unseen quantiles at (rank + 0.5) / 4
    assert distance(targets, targets) == 0.0
    # an image already stranger than its unseen quantile keeps its own loss: never pulled down
    assert rank_matched_targets(torch.tensor([0.3, 0.1, 5.0, 0.05]), unseen).tolist() == \
        pytest.approx([2.5, 1.5, 5.0, 0.5], abs=1e-6)
    assert distance(torch.sort(targets).values.flip(0), targets) == 0.0  # order-free
    # mean |sorted losses - sorted targets| / mean target = (0.45 + 1.4 + 2.3 + 3.2) / 4 / 2
    assert distance(forget, targets) == pytest.approx(0.91875, rel=1e-5)


def test_match_moves_memorised_images_towards_unseen(memorised: dict, tmp_path: Path) -> None:
    """Noise images with random labels, memorised: a retrain gets them right only by chance.
    Matching must raise their loss to the unseen images' (the oracle's), not to infinity, and
    keep the rest memorised; the report puts them beside the test split and the oracle."""
    data = memorised["data"]
    prov = forget_by_matching(str(memorised["saw"]), str(data), str(memorised["ids"]),
                              str(tmp_path / "u"), MatchSettings(max_steps=300),
                              device="cpu", progress=False)
    # no holdout: the reference is half the test split, the evaluation's attacks the other half
    assert prov["method"] == "match"
    assert prov["reference"] == "test split, reference half (45 of 90 images)"
    assert prov["distance_start"] > 0.9 and prov["distance_end"] < 0.4  # from 1.0
    assert prov["cap_hit"] == (prov["distance_end"] > prov["tolerance"])
    report = evaluate(str(tmp_path / "u"), str(data), tmp_path / "r",
                      forget_ids=str(memorised["ids"]), original=str(memorised["saw"]),
                      oracle=str(memorised["never"]), device="cpu", progress=False)
    oracle = report["models"]["oracle"]["metrics"]
    assert report["forget_train_acc"] < 0.8  # from 1.0: no longer memorised
    assert abs(report["forget_train_loss"] - oracle["forget_train_loss"]) < 0.5 * oracle[
        "forget_train_loss"]
    assert report["mia_loss_auc"] < 0.8 < report["models"]["original"]["metrics"]["mia_loss_auc"]
    assert report["retain_train_acc"] >= 0.9  # the rest stays memorised
    summary = (tmp_path / "r" / "report.md").read_text()
    assert f"- oracle: forgotten images acc {oracle['forget_train_acc']:.4f}" in summary
    assert "test split acc" in summary
    assert report["unseen_images"] == {
        "evaluation": "test split, evaluation half (45 of 90 images)",
        "reference": "test split, reference half (45 of 90 images)"}


def test_match_undoes_steps_that_harm_the_retain_images(memorised: dict,
                                                        tmp_path: Path) -> None:
    """A step size far too large for the model: every step that raises the guard images' loss
    past the budget is undone and the step halved, so the rest stays memorised; without the
    guard the same steps wreck it."""
    data, ids = str(memorised["data"]), str(memorised["ids"])
    train = open_dataset(data).split("train")
    forget = train.indices(read_sample_ids(ids))
    retain = np.setdiff1d(np.arange(len(train)), forget)
    runs = {}
    for name, guard in (("guarded", 0.1), ("unguarded", 1e6)):
        runs[name] = forget_by_matching(
            str(memorised["saw"]), data, ids, str(tmp_path / name),
            MatchSettings(lr=0.5, max_steps=40, retain_guard=guard), device="cpu",
            progress=False)
        runs[name]["retain_acc"] = accuracy(load_model(tmp_path / name), train, retain)
    guarded = runs["guarded"]
    assert guarded["halved_at"] and guarded["final_lr"] < 0.5
    assert guarded["guard_loss_end"] <= guarded["guard_loss_limit"]
    assert guarded["retain_acc"] >= 0.95
    # without a budget a step is undone only when the loss went non-finite, which is too late;
    # how far past the budget it ends is chaotic at this step size (7x on a Xeon, over 10x on
    # an EPYC), so only "past it" is asserted
    assert runs["unguarded"]["retain_acc"] < 0.8
    assert runs["unguarded"]["guard_loss_end"] > guarded["guard_loss_limit"]


def test_guarded_neggrad_keeps_the_retain_images(memorised: dict, tmp_path: Path) -> None:
    """NegGrad+ with --retain-guard: the ascent that wrecks the memorised retain images as
    published is undone and halved; random-label has no guard to take."""
    data, ids = str(memorised["data"]), str(memorised["ids"])
    train = open_dataset(data).split("train")
    retain = np.setdiff1d(np.arange(len(train)), train.indices(read_sample_ids(ids)))

    def neggrad(name: str, guard: float | None) -> dict:  # a step per epoch: 24 images
        # as published, the retain accuracy is below 0.5 from step 60 here (NaN by step 100);
        # guarded, the run ends on its halvings after about 40 steps
        return forget_with_baseline(str(memorised["saw"]), data, str(tmp_path / name),
                                    "neggrad+", ids_file=ids, settings=BaselineSettings(
                                        epochs=100, lr=0.5, retain_guard=guard),
                                    device="cpu", progress=False)

    guarded = neggrad("guarded", 0.1)
    assert guarded["halved_at"] and guarded["guard_loss_end"] <= guarded["guard_loss_limit"]
    assert accuracy(load_model(tmp_path / "guarded"), train, retain) >= 0.85
    try:  # as published, the ascent wrecks the retain images, or diverges to NaN weights,
        published = neggrad("published", None)  # which are refused, nothing written
    except OblivioError as exc:
        assert "weights are NaN or infinite" in str(exc)
        assert not (tmp_path / "published").exists()
    else:
        assert "halved_at" not in published
        assert accuracy(load_model(tmp_path / "published"), train, retain) < 0.5
    refused = runner.invoke(app, ["forget", "--model", str(memorised["saw"]), "--data", data,
                                  "--forget-ids", ids, "--method", "random-label",
                                  "--retain-guard", "0.1", "--out", str(tmp_path / "r")])
    assert refused.exit_code == 2
    assert "--retain-guard does not apply to --method random-label" in refused.stderr


def test_match_leaves_a_request_that_already_looks_unseen(trained_rgb, tmp_path: Path) -> None:
    """Typical images of a model that generalises: about as familiar as unseen ones, so the
    stopping bar (a random unseen set's distance) is met at once and the model barely moves."""
    data, model_dir = trained_rgb
    (tmp_path / "ids.txt").write_text("rgb/train/0003\nrgb/train/0064\nrgb/train/0125\n")
    prov = forget_by_matching(str(model_dir), str(data), str(tmp_path / "ids.txt"),
                              str(tmp_path / "u"), device="cpu", progress=False)
    assert prov["steps"] <= 2 and not prov["cap_hit"]
    test = open_dataset(data).split("test")
    before = accuracy(load_model(model_dir), test)
    assert accuracy(load_model(tmp_path / "u"), test) >= before - 0.02


def test_match_after_a_forgotten_class_matches_among_the_classes_it_still_knows(
        trained_rgb, projected: Path, tmp_path: Path) -> None:
    """A model that forgot class 1 misclassifies its unseen images at a loss no kept image has:
    as targets they would push typical images off their labels (make demo lost 1.3-2.6 test
    points so). The reference is drawn from the classes the model still knows, and the request's
    images of class 1 are left to the class (recorded), the evaluation judged likewise."""
    data, _ = trained_rgb
    train, test = open_dataset(data).split("train"), open_dataset(data).split("test")
    ids = ["rgb/train/0000", "rgb/train/0001", "rgb/train/0060", "rgb/train/0061",  # class 0, 1
           "rgb/train/0120", "rgb/train/0180"]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    prov = forget_by_matching(str(projected), str(data), str(tmp_path / "ids.txt"),
                              str(tmp_path / "u"), device="cpu", progress=False)
    assert prov["forgotten_with_class"] == 2 and prov["forgotten_ids_count"] == len(ids)
    losses = torch.nn.functional.cross_entropy(
        predict_logits(load_model(projected), test), test.labels, reduction="none")
    known = test.labels != 1
    assert losses[~known].min() > losses[known].max()  # the class is gone: every loss above
    assert prov["target_loss_mean"] <= float(losses[known].max())

    report = evaluate(str(tmp_path / "u"), str(data), tmp_path / "report",
                      forget_ids=str(tmp_path / "ids.txt"), original=str(projected),
                      device="cpu", progress=False)
    assert report["judged_without_classes"] == [1] and report["forgotten_with_class"] == 2
    kept = test.labels.numpy() != 1
    assert report["retain_test_acc"] == pytest.approx(
        accuracy(load_model(tmp_path / "u"), test, np.flatnonzero(kept)))
    assert report["forget_train_acc"] == pytest.approx(
        accuracy(load_model(tmp_path / "u"), train, train.indices(ids[:2] + ids[4:])))
    assert "without class(es) 1" in (tmp_path / "report" / "report.md").read_text()


def test_batchnorm_recalibration_restores_statistics_and_touches_no_weight(
        trained_rgb) -> None:
    data, model_dir = trained_rgb
    model = load_model(model_dir)
    train, test = open_dataset(data).split("train"), open_dataset(data).split("test")
    before = accuracy(model, test)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k
               and "num_batches" not in k}
    for m in batchnorm_layers(model):  # the drift of train-mode steps on a few images
        m.running_mean.add_(3.0)
        m.running_var.mul_(5.0)
    assert accuracy(model, test) < before - 0.2
    seen = recalibrate_batchnorm(model, train, np.arange(len(train)), 4, 32,
                                 torch.Generator().manual_seed(0), "cpu")
    assert seen == 128 and accuracy(model, test) >= before - 0.05
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    assert all(m.momentum == 0.1 for m in batchnorm_layers(model))


def test_neighbour_targets_give_an_image_the_loss_of_unseen_images_as_typical() -> None:
    """An atypical image (none of its nearest retain images share its label) gets the loss of
    atypical unseen images, a typical one the loss of typical ones, whatever its own loss now:
    rank targets would give a memorised image, the most familiar, the lowest unseen loss."""
    from oblivio.unlearn.instances.matching import LIKE_SAMPLES, neighbour_targets

    unseen_agree = torch.cat([torch.ones(LIKE_SAMPLES), torch.zeros(LIKE_SAMPLES)])
    unseen_loss = torch.cat([torch.full((LIKE_SAMPLES,), 0.1), torch.full((LIKE_SAMPLES,), 3.0)])
    targets = neighbour_targets(torch.tensor([0.0, 1.0, 0.9]), unseen_agree, unseen_loss)
    assert targets.tolist() == pytest.approx([3.0, 0.1, 0.1])
    start = torch.tensor([0.001, 0.5, 0.2])  # the atypical image is the most familiar now
    assert rank_matched_targets(start, unseen_loss)[0] < 0.2 < targets[0]


@pytest.mark.parametrize(("method", "caps"), [
    ("match", ["--max-steps", "1000000", "--tolerance", "0", "--lr", "1e-6"]),
    ("l2ul", ["--max-epochs", "1000000", "--lr", "1e-9", "--adv-per-instance", "1",
              "--pgd-iters", "1"]),
    ("scrub", ["--epochs", "100000"]),
    ("neggrad+", ["--epochs", "100000", "--lr", "1e-9"])])
def test_max_seconds_ends_the_steps_where_the_budget_ends(memorised: dict, tmp_path: Path,
                                                          method: str, caps: list[str]) -> None:
    """--max-seconds, a wall-clock budget, ends each loop (match's, L2UL's, SCRUB's and the
    shared one) long before a cap it could not reach, with steps so small that no target
    stops it first; the run says so and its model is written."""
    result = runner.invoke(app, ["forget", "--model", str(memorised["saw"]), "--data",
                                 str(memorised["data"]), "--forget-ids", str(memorised["ids"]),
                                 "--out", str(tmp_path / "u"), "--device", "cpu", "--method",
                                 method, "--max-seconds", "1", *caps])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["deadline_hit"] and 0 < summary["steps"] < 100000
    assert "stopped at --max-seconds" in result.stderr
    assert load_model(tmp_path / "u").config["provenance"]["deadline_hit"]


def test_max_seconds_is_refused_where_it_cannot_apply(memorised: dict, tmp_path: Path) -> None:
    for args, error in ((["--method", "ssd", "--max-seconds", "5"], "does not apply"),
                        (["--method", "match", "--max-seconds", "0"],
                         "max seconds must be positive")):
        result = runner.invoke(app, ["forget", "--model", str(memorised["saw"]), "--data",
                                     str(memorised["data"]), "--forget-ids",
                                     str(memorised["ids"]), "--out", str(tmp_path / "u"),
                                     "--device", "cpu", *args])
        assert result.exit_code == 2 and error in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "u").exists()
