"""Helpers shared by the benchmarks: data and cached models under one output folder, isolated
runs (one process each, so peak memory is the run's own), per-class test accuracy, the quality
metrics every bench reports, the ledger of retrain oracles, tables."""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oblivio.data import open_dataset
from oblivio.data.fashion_mnist import convert
from oblivio.data.reader import Dataset
from oblivio.evaluation.metrics import ForgetSpec, compute_metrics
from oblivio.evaluation.outputs import Outputs, collect_outputs
from oblivio.evaluation.relearn import relearn
from oblivio.models import load_model
from oblivio.models.inference import predict_logits
from oblivio.training import recipe_for, train_to_dir

ORACLE_LEDGER = Path(__file__).resolve().parent / "oracles.json"
TRAIN_EVAL = 12_000


def fashion_mnist(out: Path) -> Path:
    data = out / "data" / "fashion-mnist"
    if not (data / "train.parquet").exists():
        convert(str(data))
    return data


def _peak_mib() -> float:
    """This process's peak RSS. ru_maxrss survives exec on Linux, so a spawned child would
    report its parent's peak when that was higher; VmHWM belongs to the address space, which
    exec replaces."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[..., Any], args: tuple) -> tuple[Any, float, float]:
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start, _peak_mib()


def isolated(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, float]:
    """Run ``fn(*args)`` in a fresh process: (result, seconds, peak RSS in MiB)."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(timed, fn, args).result()


def trained(data: Path, arch: str, out: Path, epochs: int, exclude: str | None = None,
            device: str = "cpu", exclude_ids: str | None = None, **recipe: Any) -> dict:
    """Train once and cache: the metrics of the model in ``out`` (``recipe``: overrides of the
    architecture's default recipe; ``exclude`` classes, ``exclude_ids`` a file of sample ids)."""
    if not (out / "metrics.json").exists():
        isolated(train_to_dir, str(data), arch, str(out),
                 recipe_for(arch, epochs=epochs, **recipe), exclude, exclude_ids, device, False)
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


def outputs_of(model_dir: Path, data: Path, train_rows: np.ndarray | None = None,
               device: str = "cpu") -> tuple[Outputs, Outputs]:
    """One forward pass of the model over (rows of) train and over test."""
    return _outputs(model_dir, open_dataset(data), train_rows, device)


def _outputs(model_dir: Path, ds: Dataset, train_rows: np.ndarray | None,
             device: str) -> tuple[Outputs, Outputs]:
    model = load_model(model_dir, device)
    return (collect_outputs(model, ds.split("train"), train_rows, device=device, progress=False),
            collect_outputs(model, ds.split("test"), device=device, progress=False))


def evidence(model_dir: Path, data: Path, c: int, device: str = "cpu") -> dict:
    """The issue-4 metric set of a model for forgetting class ``c``, on all of train and test."""
    ds = open_dataset(data)
    train, test = _outputs(model_dir, ds, None, device)
    spec = ForgetSpec([c], ds.split("train").labels.numpy() == c,
                      ds.split("test").labels.numpy() == c)
    return compute_metrics(train, test, spec, ds.num_classes)


def sampled_quality(model_dir: Path, data: Path, c: int, device: str = "cpu") -> dict:
    """The same metrics on test and a fixed 12,000-image sample of train, SVC attacks capped at
    2,000 per side: what the baselines bench compares, at a fraction of the cost."""
    ds = open_dataset(data)
    labels = ds.split("train").labels.numpy()
    rows = np.sort(np.random.default_rng(7).permutation(len(labels))[:TRAIN_EVAL])
    train, test = _outputs(model_dir, ds, rows, device)
    spec = ForgetSpec([c], labels[rows] == c, ds.split("test").labels.numpy() == c)
    return compute_metrics(train, test, spec, ds.num_classes, seed=0, svc_cap=2000)


def oracle_key(arch: str, c: int, epochs: int) -> str:
    return f"{arch}-oracle{c}-{epochs}ep"


def read_ledger() -> dict:
    return json.loads(ORACLE_LEDGER.read_text()) if ORACLE_LEDGER.exists() else {}


def known_oracle(arch: str, c: int, epochs: int) -> dict | None:
    """The ledger's entry for this oracle, if it was trained with today's default recipe."""
    entry = read_ledger().get(oracle_key(arch, c, epochs))
    return entry if entry and entry["recipe"] == asdict(recipe_for(arch, epochs=epochs)) else None


def relearned(model_dir: Path, data: Path, c: int, device: str = "cpu") -> dict:
    """The relearning measurement (default settings) of a model for forgotten class ``c``."""
    ds = open_dataset(data)
    return relearn(load_model(model_dir, device), ds.split("train"), ds.split("test"), [c],
                   device=device, progress=False)


def ledger_entry(data: Path, model_dir: Path, c: int, device: str = "cpu") -> dict:
    """What the ledger keeps of a trained oracle: per-class test accuracy, training seconds and
    device, both metric sets and the relearning measurement."""
    metrics = json.loads((model_dir / "metrics.json").read_text())
    return {
        "recipe": metrics["recipe"], "seconds": metrics["seconds"],
        "device": metrics.get("device", "cpu"), "test_acc": metrics["test_acc"],
        "weights_sha256": json.loads((model_dir / "config.json").read_text())["weights_sha256"],
        "per_class_test_acc": per_class_accuracy(model_dir, data, device).tolist(),
        "evidence": evidence(model_dir, data, c, device),
        "sampled_quality": sampled_quality(model_dir, data, c, device),
        "relearn": relearned(model_dir, data, c, device),
    }


def add_to_ledger(entries: dict[str, dict]) -> None:
    ledger = read_ledger() | entries
    ORACLE_LEDGER.write_text(json.dumps(dict(sorted(ledger.items())), indent=1) + "\n")


def oracle(data: Path, out: Path, arch: str, epochs: int, c: int, train: bool = False,
           device: str = "cpu") -> dict | None:
    """The retrain oracle without class ``c``: what the benches report of it.

    An oracle costs as much as the original model (77 min for resnet18 on 2 cores) and a fresh
    checkout has no model cache, so every oracle trained is summarised in the committed ledger
    ``bench/oracles.json`` and later runs read it from there (``bench/oracles.py`` fills it
    in parallel). An entry whose recipe differs from today's default is ignored.
    Returns None when no oracle is known and ``train`` is off.
    """
    known = known_oracle(arch, c, epochs)
    if known is not None:
        return known
    key = oracle_key(arch, c, epochs)
    model_dir = out / "models" / key
    if not train and not (model_dir / "metrics.json").exists():
        return None
    trained(data, arch, model_dir, epochs, str(c), device)
    add_to_ledger({key: ledger_entry(data, model_dir, c, device)})
    return read_ledger()[key]
