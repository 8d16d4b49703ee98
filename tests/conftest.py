"""Shared fixtures: the real Fashion-MNIST (converted once per session) and a small synthetic RGB
dataset, so the suite checks both the built-in data and the general contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oblivio.data.fashion_mnist import DEFAULT_IDX_DIR, convert
from oblivio.data.write import write_classes, write_split


@pytest.fixture(scope="session")
def fashion_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Fashion-MNIST in the dataset contract."""
    if not Path(DEFAULT_IDX_DIR, "train-images-idx3-ubyte.gz").exists():
        pytest.fail("Fashion-MNIST IDX files missing: run `make test` (it installs them)")
    out = tmp_path_factory.mktemp("fashion-mnist")
    convert(str(out))
    return out


@pytest.fixture(scope="session")
def fm(fashion_mnist: Path):
    """The converted Fashion-MNIST, opened once: splits decode lazily and are shared."""
    from oblivio.data import open_dataset

    return open_dataset(fashion_mnist)


def make_rgb_dataset(out: Path | str, classes: int = 3, per_class: int = 40, size: int = 16,
                     seed: int = 0) -> Path:
    """A learnable RGB dataset: each class is a distinct mean colour plus noise."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0.2, 0.8, size=(classes, 3))
    for split, n in (("train", per_class), ("test", per_class // 2)):
        labels = np.repeat(np.arange(classes), n)
        noise = rng.normal(0, 0.08, (len(labels), size, size, 3))
        pixels = colours[labels][:, None, None, :] + noise
        images = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
        ids = [f"rgb/{split}/{i:04d}" for i in range(len(labels))]
        write_split(str(out), split, ids, labels, images)
    write_classes(str(out), "rgb", [f"colour{i}" for i in range(classes)])
    return out


@pytest.fixture()
def rgb_dataset(tmp_path: Path) -> Path:
    return make_rgb_dataset(tmp_path / "rgb")


@pytest.fixture(scope="session")
def trained_rgb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 4-class RGB dataset and a resnet18 trained on it for 3 epochs (seconds)."""
    from oblivio.training import Recipe, train_to_dir

    root = tmp_path_factory.mktemp("trained-rgb")
    data = make_rgb_dataset(root / "data", classes=4, per_class=60, size=16)
    train_to_dir(str(data), "resnet18", str(root / "model"),
                 Recipe(epochs=3, batch_size=32, lr=0.05), device="cpu", progress=False)
    return data, root / "model"
