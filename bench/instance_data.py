"""The instance bench's data and models: a Fashion-MNIST subset with mislabelled images trained
in, held-out validation images from the same training distribution, the base model and the
union retrain oracle.

Why a subset: a resnet18 retrain on all 60,000 images takes over an hour on two CPU cores and the
bench needs two; on 20,000 images the same recipe takes a third of that, and a model trained on
less data memorises more, which makes the instance problem harder, not easier. ``--train-size
60000`` gives the full-size bench where a GPU makes it affordable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oblivio.data import open_dataset
from oblivio.data.fashion_mnist import CLASSES, DEFAULT_IDX_DIR, NAME, load_split, sample_ids
from oblivio.data.sample_ids import write_sample_ids
from oblivio.data.write import write_classes, write_split

FLIPPED, VALIDATION = 64, 5_000


@dataclass(frozen=True)
class BenchData:
    data: Path  # train: the subset, flipped labels included; test: Fashion-MNIST's test split
    validation: Path  # test: held-out training images the base model never saw (its train
    # split, which the contract requires, is Fashion-MNIST's test split and goes unused)
    flipped_ids: list[str]
    train_size: int


def _write(out: Path, train: tuple[list[str], np.ndarray, np.ndarray],
           test: tuple[list[str], np.ndarray, np.ndarray]) -> None:
    write_split(str(out), "train", *train)
    write_split(str(out), "test", *test)
    write_classes(str(out), NAME, CLASSES)


def prepare(out: Path, train_size: int, seed: int = 2026) -> BenchData:
    """Write (once) the subset with ``FLIPPED`` images relabelled to another class, and the
    validation images; the split between them is fixed by ``seed``."""
    root = out / "data" / f"fm-instance-{train_size}"
    data, validation = root / "train-test", root / "validation"
    meta = root / "flipped.json"
    if not meta.exists():
        images, labels = load_split(DEFAULT_IDX_DIR, "train")
        test_images, test_labels = load_split(DEFAULT_IDX_DIR, "test")
        ids = np.array(sample_ids("train", len(labels)))
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(labels))
        if train_size + VALIDATION > len(labels):
            raise SystemExit(f"train size at most {len(labels) - VALIDATION}")
        keep, held = np.sort(order[:train_size]), np.sort(order[-VALIDATION:])
        sub_labels = labels[keep].copy()
        flip = rng.choice(train_size, FLIPPED, replace=False)
        sub_labels[flip] = (sub_labels[flip] + rng.integers(1, 10, FLIPPED)) % 10
        test = (sample_ids("test", len(test_labels)), test_labels, test_images)
        _write(data, (ids[keep].tolist(), sub_labels, images[keep]), test)
        _write(validation, test, (ids[held].tolist(), labels[held], images[held]))
        meta.write_text(json.dumps({"flipped_ids": ids[keep][np.sort(flip)].tolist()}))
    return BenchData(data, validation, json.loads(meta.read_text())["flipped_ids"], train_size)


def forget_rows(bench: BenchData, seed: int, k: int) -> np.ndarray:
    """Draw ``seed``'s k training rows: a prefix of one permutation of the correctly labelled
    rows, so every k of a seed is nested in the larger ones."""
    train = open_dataset(bench.data).split("train")
    clean = np.setdiff1d(np.arange(len(train)), train.indices(bench.flipped_ids))
    return np.sort(clean[np.random.default_rng(seed).permutation(len(clean))[:k]])


def union_ids(bench: BenchData, draws: dict[int, int]) -> list[str]:
    """Every image any draw forgets (largest k of each seed) plus the flipped ones: the union
    oracle never saw any of them."""
    train = open_dataset(bench.data).split("train")
    rows = np.unique(np.concatenate([forget_rows(bench, s, k) for s, k in draws.items()]))
    return sorted(set(train.ids_at(rows)) | set(bench.flipped_ids))


def write_ids(path: Path, ids: list[str]) -> Path:
    write_sample_ids(path, ids)
    return path
