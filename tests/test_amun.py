"""AMUN on the memorising world: every forget image is memorised noise, so a retrain gets it
right only by chance. AMUN moves the boundary only near each image (the
paper's design: confidence lowered towards an unseen image's), so it must lower the images'
confidence (the control: the original, at a loss near 0) and keep the rest, but it need not
misclassify them; whether that is retrain-like is the pool's question
(bench/pool.py). It finds an adversarial example for every image at the smallest radius that
flips it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from oblivio.cli import app
from oblivio.data import open_dataset
from oblivio.data.sample_ids import read_sample_ids
from oblivio.models import load_model
from oblivio.models.inference import accuracy, predict_logits
from oblivio.unlearn.baselines.amun import AmunSettings, nearest_adversarial

runner = CliRunner()


def test_the_nearest_adversarial_example_flips_at_the_smallest_doubling(memorised: dict) -> None:
    model = load_model(memorised["saw"])
    train = open_dataset(memorised["data"]).split("train")
    x, y = train.batch(np.arange(24))
    settings = AmunSettings(eps=0.05)
    adv, label, found, radius = nearest_adversarial(model, x, y, settings,
                                                    torch.Generator().manual_seed(0))
    assert found.all() and (label != y).all()
    with torch.no_grad():
        assert (model(adv).argmax(1) == label).all()
    distance = (adv - x).flatten(1).norm(dim=1).numpy()
    assert (distance <= radius + 1e-4).all()  # within the radius that flipped it
    assert len(set(radius.tolist())) > 1  # images sit at different distances from the boundary
    assert set(radius.tolist()) <= {0.05 * 2 ** i for i in range(settings.doublings + 1)}


def test_amun_forgets_memorised_images_and_keeps_the_rest(memorised: dict,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "amun"
    result = runner.invoke(app, ["forget", "--method", "amun", "--model", str(memorised["saw"]),
                                 "--data", str(memorised["data"]), "--forget-ids",
                                 str(memorised["ids"]), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    provenance = json.loads((out / "config.json").read_text())["provenance"]
    assert provenance["method"] == "amun" and provenance["adversarial_found"] == 24
    train = open_dataset(memorised["data"]).split("train")
    forget = train.indices(read_sample_ids(memorised["ids"]))
    rest = np.setdiff1d(np.arange(len(train)), forget)
    original, unlearned = load_model(memorised["saw"]), load_model(out)

    def loss(model) -> float:
        return float(torch.nn.functional.cross_entropy(predict_logits(model, train, forget),
                                                       train.labels[forget]))
    assert accuracy(original, train, forget) == 1.0  # the control: memorised
    assert loss(unlearned) > 2 * loss(original)
    assert accuracy(unlearned, train, rest) >= 0.9
    result = runner.invoke(app, ["forget", "--method", "amun", "--model", str(memorised["saw"]),
                                 "--data", str(memorised["data"]), "--classes", "1",
                                 "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "amun forgets training images" in result.stderr
