"""SCRUB and SalUn, the baselines every unlearning toolkit ships: each moves a model the way its
paper says, records what it did, and takes only its own options."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from oblivio.cli import app
from oblivio.data import open_dataset
from oblivio.errors import OblivioError
from oblivio.models import load_model
from oblivio.models.inference import accuracy
from oblivio.unlearn.baselines.run import forget_with_baseline
from oblivio.unlearn.baselines.salun import SalunSettings, saliency_masks
from oblivio.unlearn.baselines.scrub import ScrubSettings, distill_kl

runner = CliRunner()


def _accuracies(model_dir: Path, data: Path, forget: int) -> tuple[float, float]:
    """Test accuracy on the forgotten class and on the rest."""
    test = open_dataset(data).split("test")
    labels = test.labels.numpy()
    model = load_model(model_dir)
    return (accuracy(model, test, (labels == forget).nonzero()[0]),
            accuracy(model, test, (labels != forget).nonzero()[0]))


def test_distillation_loss_is_zero_on_agreement_and_grows_apart() -> None:
    logits = torch.randn(4, 5)
    assert float(distill_kl(logits, logits, 4.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_kl(logits, logits + torch.randn(4, 5) * 3, 4.0)) > 0.01


def test_scrub_forgets_a_class_and_keeps_the_rest(trained_rgb, tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    settings = ScrubSettings(epochs=4, max_epochs=2, lr=0.02, retain_batches=8, batch_size=32,
                             forget_batch_size=16)
    prov = forget_with_baseline(str(model_dir), str(data), str(tmp_path / "u"), "scrub",
                                classes="1", settings=settings, device="cpu", progress=False)
    forget_before, rest_before = _accuracies(model_dir, data, 1)
    forget_after, rest_after = _accuracies(tmp_path / "u", data, 1)
    forget_images = int((open_dataset(data).split("train").labels == 1).sum())
    assert prov["method"] == "scrub" and prov["min_steps"] == 4 * 8
    assert prov["max_steps"] == 2 * -(-forget_images // 16)  # a pass in each max epoch
    # the max-steps alone wreck the rest too; the later min-steps bring it back (lr 0.01 and
    # one min epoch after them left 67% of the rest)
    assert forget_after < forget_before - 0.5 and rest_after >= rest_before - 0.05


def test_salun_updates_only_the_salient_weights(trained_rgb, tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    model = load_model(model_dir)
    train = open_dataset(data).split("train")
    rows = (train.labels.numpy() == 1).nonzero()[0]
    masks = saliency_masks(model, train, rows, 32, 0.3, "cpu")
    kept = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    assert kept == pytest.approx(0.3, abs=0.01)
    prov = forget_with_baseline(str(model_dir), str(data), str(tmp_path / "u"), "salun",
                                classes="1", settings=SalunSettings(epochs=20, saliency=0.3),
                                device="cpu", progress=False)
    assert prov["stopped_early"] and prov["salient_weights"] / prov["weights"] == pytest.approx(
        0.3, abs=0.01)
    before, after = model.state_dict(), load_model(tmp_path / "u").state_dict()
    masks = saliency_masks(model, train, rows, 128, 0.3, "cpu")  # the run's batch size
    for name, mask in masks.items():  # off the mask a weight only decays, never changes sign
        frozen = mask == 0
        assert bool((after[name][frozen].abs() <= before[name][frozen].abs() + 1e-7).all())
        assert bool((after[name][frozen] * before[name][frozen] >= 0).all())
    assert _accuracies(tmp_path / "u", data, 1)[0] <= 0.01


def test_each_takes_only_its_own_options(trained_rgb, tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    for method, foreign in (("scrub", ["--saliency", "0.2"]),
                            ("salun", ["--retain-batches", "3"])):
        result = runner.invoke(app, ["forget", "--model", str(model_dir), "--data", str(data),
                                     "--classes", "1", "--method", method, *foreign,
                                     "--out", str(tmp_path / method)])
        assert result.exit_code == 2 and f"does not apply to --method {method}" in result.stderr
        assert not (tmp_path / method).exists()
    with pytest.raises(OblivioError, match="SCRUB runs whole epochs"):
        ScrubSettings(epochs=1.5).check()
    with pytest.raises(OblivioError, match="saliency must be in"):
        SalunSettings(saliency=0).check()


@pytest.mark.parametrize("method", ["scrub", "salun"])
def test_a_deletion_request_runs_through_the_cli(trained_rgb, tmp_path: Path,
                                                 method: str) -> None:
    data, model_dir = trained_rgb
    ids = ["rgb/train/0003", "rgb/train/0064", "rgb/train/0125"]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    budget = ["--epochs", "2", "--retain-batches", "2"] if method == "scrub" else [
        "--epochs", "50", "--lr", "0.1"]
    result = runner.invoke(app, ["forget", "--model", str(model_dir), "--data", str(data),
                                 "--forget-ids", str(tmp_path / "ids.txt"), "--method", method,
                                 *budget, "--device", "cpu", "--out", str(tmp_path / "u")])
    assert result.exit_code == 0, result.output
    prov = load_model(tmp_path / "u").config["provenance"]
    assert prov["mode"] == "instance" and prov["forgotten_ids_count"] == len(ids)
    assert "forgotten_acc" in prov and prov["method"] == method
    if method == "scrub":  # two epochs, each a max pass (one batch of 3) and 2 min batches
        assert (prov["max_steps"], prov["min_steps"]) == (2, 4)
    else:  # random labels until none of the three keeps its label
        assert prov["forgotten_acc"] == 0.0 and prov["stopped_early"]


def test_scrub_r_rewinds_to_the_epoch_nearest_the_unseen_error(trained_rgb,
                                                               tmp_path: Path) -> None:
    """SCRUB+R keeps every epoch's weights and returns those whose forget error is closest to
    the original's error on unseen images: the saved model is that epoch's, not the last."""
    from oblivio.data.unseen import reference_images

    data, model_dir = trained_rgb
    ids = [f"rgb/train/{i:04d}" for i in range(0, 240, 10)]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    common = ["forget", "--model", str(model_dir), "--data", str(data), "--forget-ids",
              str(tmp_path / "ids.txt"), "--method", "scrub", "--epochs", "4", "--max-epochs",
              "4", "--lr", "0.5", "--retain-batches", "1", "--device", "cpu"]
    result = runner.invoke(app, [*common, "--rewind", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    prov = load_model(tmp_path / "r").config["provenance"]
    errors, epoch = prov["forget_errors"], prov["rewound_to_epoch"]
    assert len(errors) == 5 and prov["params"]["rewind"] is True
    original = load_model(model_dir)
    split, rows, _ = reference_images(open_dataset(data))
    assert prov["unseen_error"] == pytest.approx(1 - accuracy(original, split, rows))
    gaps = [abs(e - prov["unseen_error"]) for e in errors]
    # here every unseen image is right, and SCRUB's ascent took the forget error to 0.75:
    # the rewind goes back to where the request's images were as right as unseen ones
    assert gaps[epoch] == min(gaps) and errors[-1] > errors[epoch], errors
    assert 1 - prov["forgotten_acc"] == pytest.approx(errors[epoch])
    plain = runner.invoke(app, [*common, "--out", str(tmp_path / "p")])  # the same run, kept
    assert plain.exit_code == 0, plain.output
    assert 1 - load_model(tmp_path / "p").config["provenance"]["forgotten_acc"] == \
        pytest.approx(errors[-1])
    refused = runner.invoke(app, ["forget", "--model", str(model_dir), "--data", str(data),
                                  "--forget-ids", str(tmp_path / "ids.txt"), "--method",
                                  "match", "--rewind", "--out", str(tmp_path / "m")])
    assert refused.exit_code == 2 and "rewind" in refused.stderr
