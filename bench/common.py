"""Helpers shared by the benchmarks: data and cached models under one output folder, isolated
runs (one process each, so peak memory is the run's own), per-class test accuracy, tables."""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from oblivio.data import open_dataset
from oblivio.data.fashion_mnist import convert
from oblivio.models import load_model
from oblivio.models.inference import predict_logits
from oblivio.training import Recipe, train_to_dir


def fashion_mnist(out: Path) -> Path:
    data = out / "data" / "fashion-mnist"
    if not (data / "train.parquet").exists():
        convert(str(data))
    return data


def _timed(fn: Callable[..., Any], args: tuple) -> tuple[Any, float, float]:
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start, resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024


def isolated(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, float]:
    """Run ``fn(*args)`` in a fresh process: (result, seconds, peak RSS in MiB)."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_timed, fn, args).result()


def trained(data: Path, arch: str, out: Path, epochs: int, exclude: str | None = None,
            device: str = "cpu") -> dict:
    """Train once and cache: the metrics of the model in ``out``."""
    if not (out / "metrics.json").exists():
        isolated(train_to_dir, str(data), arch, str(out), Recipe(epochs=epochs), exclude,
                 None, device, False)
    return json.loads((out / "metrics.json").read_text())


def per_class_accuracy(model_dir: Path, data: Path, device: str = "cpu") -> torch.Tensor:
    """Test accuracy of each class."""
    test = open_dataset(data).split("test")
    pred = predict_logits(load_model(model_dir, device), test, device=device).argmax(1)
    k = int(test.labels.max()) + 1
    correct = torch.bincount(test.labels[pred == test.labels], minlength=k).double()
    return correct / torch.bincount(test.labels, minlength=k).double()


def split_accuracy(per_class: torch.Tensor, forget: list[int]) -> tuple[float, float]:
    """(retain, forget) accuracy in percent; classes are balanced in Fashion-MNIST's test split."""
    mask = torch.zeros(len(per_class), dtype=torch.bool)
    mask[forget] = True
    return 100 * float(per_class[~mask].mean()), 100 * float(per_class[mask].mean())


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
