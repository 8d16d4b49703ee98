from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import oblivio
from oblivio.cli import app
from oblivio.data import open_dataset
from oblivio.errors import OblivioError
from oblivio.models import build
from oblivio.training import Recipe, augment, recipe_for, seed_everything, select_rows, train

runner = CliRunner()


def test_augment_shift_and_flip_are_per_sample_and_lossless_at_zero() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8)
    assert torch.equal(augment(x, 0, False, gen), x)
    shifted = augment(x, 2, False, gen)
    assert shifted.shape == x.shape
    # every output is a translate of its own input: its non-zero content is a sub-block of x
    assert not torch.equal(shifted, x)
    flipped = augment(x, 0, True, gen)
    same = (flipped == x).flatten(1).all(1)
    mirrored = (flipped == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 0 < int(mirrored.sum()) < 64


@pytest.mark.parametrize("recipe", [Recipe(epochs=3, batch_size=64, lr=0.05),
                                    Recipe(epochs=3, batch_size=64, lr=1e-3, optimizer="adamw")])
def test_training_on_a_small_subset_lowers_the_loss(fm, recipe: Recipe) -> None:
    split = fm.split("train")
    model = build("resnet18", 10, 1, 28)
    result = train(model, split, np.arange(512), recipe, progress=False)
    assert result.epoch_loss[-1] < result.epoch_loss[0] - 0.3
    assert not model.training


def test_vision_transformers_default_to_adamw() -> None:
    vit, cnn = recipe_for("vit_tiny_patch16_224"), recipe_for("resnet18", epochs=2, lr=None)
    assert (vit.optimizer, vit.lr, vit.weight_decay) == ("adamw", 1e-3, 0.05)
    assert (cnn.optimizer, cnn.lr, cnn.epochs) == ("sgd", 0.1, 2)
    assert recipe_for("vit_small_patch16_224", lr=3e-4).lr == 3e-4
    assert recipe_for("test_vit").optimizer == "adamw"


def test_unknown_optimizer_is_one_clear_error(fm) -> None:
    with pytest.raises(OblivioError, match="unknown optimizer 'lamb'"):
        train(build("resnet18", 10, 1, 28), fm.split("train"), np.arange(64),
              Recipe(optimizer="lamb"), progress=False)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here"))])
def test_same_seed_same_weights(fm, device: str) -> None:
    split = fm.split("train")
    states = []
    for _ in range(2):
        seed_everything(3)
        model = build("resnet18", 10, 1, 28)
        result = train(model, split, np.arange(256), Recipe(epochs=1, batch_size=64, seed=3),
                       device=device, progress=False)
        states.append({k: v.cpu() for k, v in model.state_dict().items()})
    assert np.isfinite(result.epoch_loss).all()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_select_rows_excludes_classes_and_rows(rgb_dataset: Path) -> None:
    split = open_dataset(rgb_dataset).split("train")
    rows = select_rows(split, [1], np.array([0, 1]))
    assert set(split.labels[rows].tolist()) == {0, 2}
    assert 0 not in rows and 1 not in rows and len(rows) == 120 - 40 - 2


def test_cli_train_writes_model_and_metrics(rgb_dataset: Path, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("rgb/train/0000\nrgb/train/0001\n")
    out = tmp_path / "oracle"
    result = runner.invoke(app, ["train", "--data", str(rgb_dataset), "--arch", "resnet18",
                                 "--epochs", "2", "--batch-size", "32", "--out", str(out),
                                 "--exclude-classes", "2", "--exclude-ids", str(ids),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["exclude_classes"] == [2]
    assert metrics["train_rows"] == 120 - 40 - 2 and metrics["exclude_ids_count"] == 2
    assert 0.0 <= metrics["test_acc"] <= 1.0
    model = oblivio.load_model(out)
    assert model.config["provenance"]["training"]["recipe"]["epochs"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--exclude-classes", "7"], "error: class 7 out of range"),
        (["--exclude-classes", "0,1,2"], "error: cannot exclude every class"),
        (["--arch", "nope"], "error: unknown architecture 'nope'"),
        (["--epochs", "0"], "error: --epochs must be at least 1, got 0"),
        (["--device", "tpu"], "error: unknown device 'tpu'"),
    ],
)
def test_cli_bad_input_one_line_nothing_written(rgb_dataset: Path, tmp_path: Path,
                                                args: list[str], message: str) -> None:
    out = tmp_path / "model"
    result = runner.invoke(app, ["train", "--data", str(rgb_dataset), "--out", str(out), *args])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_unknown_exclude_ids(rgb_dataset: Path, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("rgb/test/0000\n")
    result = runner.invoke(app, ["train", "--data", str(rgb_dataset), "--out",
                                 str(tmp_path / "m"), "--exclude-ids", str(ids)])
    assert result.exit_code == 2
    assert "not in split 'train'" in result.stderr
    assert not (tmp_path / "m").exists()


def test_cli_data_conversion_bad_idx_dir(tmp_path: Path) -> None:
    (tmp_path / "idx").mkdir()
    result = runner.invoke(app, ["data", "fashion-mnist", "--out", str(tmp_path / "d"),
                                 "--idx-dir", str(tmp_path / "idx")])
    assert result.exit_code == 2
    assert "missing train-images-idx3-ubyte(.gz)" in result.stderr
    assert not (tmp_path / "d").exists()
