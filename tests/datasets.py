"""Small synthetic datasets in oblivio's contract, for tests that need data of a shape
Fashion-MNIST does not have (RGB, other sizes, few classes)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from oblivio.data.write import write_classes, write_split


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


def _idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_idx_dir(folder: Path, train: int = 40, test: int = 20) -> Path:
    """Fashion-MNIST's IDX layout (gzipped) with random images, labels cycling over 10."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for images, labels, count in (("train-images-idx3-ubyte", "train-labels-idx1-ubyte", train),
                                  ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", test)):
        _idx(folder / f"{images}.gz", 2051, rng.integers(0, 256, (count, 28, 28)))
        _idx(folder / f"{labels}.gz", 2049, np.arange(count) % 10)
    return folder
