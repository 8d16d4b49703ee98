"""The CUDA path: the same results as the CPU path, and the same results twice (training's
twice is in test_training.py). These run only where a GPU is present: CI has none, and the
sessions that are lent one run them there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import oblivio
from oblivio.data import open_dataset
from oblivio.evaluation.outputs import collect_outputs
from oblivio.unlearn.classes.forget import (
    ContrastSettings,
    ProjectionSettings,
    forget_by_contrast,
    forget_classes,
)
from oblivio.unlearn.classes.statistics import capture_statistics
from oblivio.unlearn.instances.l2ul import L2ULSettings, forget_instances
from tests.test_class_forgetting import assert_forgot_class
from tests.test_instance_forgetting import _forget_acc, mislabelled  # noqa: F401

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double().cpu() - b.double().cpu()).norm() / b.double().cpu().norm())


def test_capture_on_cuda_matches_cpu(trained_rgb) -> None:
    data, model_dir = trained_rgb
    split = open_dataset(data).split("train")
    rows = np.arange(0, len(split), 3)
    stats = {d: capture_statistics(oblivio.load_model(model_dir), split, rows, 32, d,
                                   progress=False) for d in ("cpu", "cuda")}
    assert stats["cuda"].layers.keys() == stats["cpu"].layers.keys()
    for name, cpu in stats["cpu"].layers.items():
        gpu = stats["cuda"].layers[name]
        assert gpu.count == cpu.count
        # cuDNN convolutions may run in TF32: activations agree to ~1e-3, not to float32's eps.
        assert _relative(gpu.as_gram(), cpu.as_gram()) < 1e-2, name


@pytest.mark.parametrize(("method", "settings"), [(forget_classes, ProjectionSettings),
                                                 (forget_by_contrast, ContrastSettings)])
def test_class_forgetting_on_cuda_is_deterministic_and_forgets(trained_rgb, tmp_path: Path,
                                                               method, settings) -> None:
    data, model_dir = trained_rgb
    provs = []
    for name in ("a", "b"):
        provs.append(method(str(model_dir), str(data), "1", str(tmp_path / name),
                            settings(retain_per_class=20, forget_samples=30, val_per_class=10,
                                     val_forget_samples=20), device="cuda", progress=False))
    a, b = (oblivio.load_model(tmp_path / n) for n in ("a", "b"))
    assert a.config["weights_sha256"] == b.config["weights_sha256"]
    assert provs[0]["device"] == "cuda" and provs[0]["peak_cuda_mb"] > 0
    assert_forgot_class(model_dir, data, a, 1)


def test_outputs_on_cuda_match_cpu(trained_rgb) -> None:
    data, model_dir = trained_rgb
    test = open_dataset(data).split("test")
    model = oblivio.load_model(model_dir)
    cpu = collect_outputs(model, test, progress=False)
    gpu = collect_outputs(model, test, device="cuda", progress=False)
    assert _relative(torch.as_tensor(gpu.logits), torch.as_tensor(cpu.logits)) < 1e-2
    assert (np.asarray(gpu.logits).argmax(1) == np.asarray(cpu.logits).argmax(1)).mean() > 0.95


def test_l2ul_on_cuda_forgets_every_instance(mislabelled: dict, tmp_path: Path) -> None:  # noqa: F811
    data, model_dir = mislabelled["data"], mislabelled["model"]
    settings = L2ULSettings(adv_per_instance=4, pgd_iters=30, adv_batch=8, max_epochs=1000)
    prov = forget_instances(str(model_dir), str(data), str(mislabelled["ids"]),
                            str(tmp_path / "u"), settings, device="cuda", progress=False)
    assert not prov["cap_hit"] and prov["forget_acc"] == 0.0
    assert _forget_acc(tmp_path / "u", data, mislabelled["forget"]) == 0.0
