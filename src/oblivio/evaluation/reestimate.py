"""Batch norm re-estimated on kept images (docs/algorithms.md §4.5): does a forgotten class come
back when a user re-estimates the running statistics, as they do after editing, pruning or
converting a model? The attack needs no forgotten image. A projection that removes a class
through the weights but leaves the statistics computed on the original's activations can have
the class return (37-72% of its test images before batch-norm rounds existed); a retrain has
nothing to return."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from oblivio.data.reader import Split
from oblivio.models.batchnorm import batchnorm_layers, recalibrate_batchnorm
from oblivio.models.inference import predict_logits

REESTIMATE_KEYS = ["reestimated_forget_test_acc", "reestimated_retain_test_acc"]


@dataclass(frozen=True)
class ReestimateSettings:
    """``batches`` random batches of ``batch_size`` kept training images, in train mode, the
    running statistics reset first and averaged exactly (torch's ``momentum=None``)."""

    batches: int = 40
    batch_size: int = 128
    seed: int = 123


def reestimated_accuracy(model: nn.Module, train: Split, test: Split, train_forget: np.ndarray,
                         test_forget: np.ndarray,
                         settings: ReestimateSettings = ReestimateSettings(),
                         device: str = "cpu") -> dict[str, float | None]:
    """Forget and retain test accuracy of a copy of ``model`` whose batch-norm statistics were
    re-estimated on the training rows outside ``train_forget``; None for a model without
    batch norm (nothing to re-estimate). ``model`` itself is untouched."""
    if not batchnorm_layers(model):
        return dict.fromkeys(REESTIMATE_KEYS)
    copied = copy.deepcopy(model).to(device)
    recalibrate_batchnorm(copied, train, np.flatnonzero(~train_forget), settings.batches,
                          settings.batch_size, torch.Generator().manual_seed(settings.seed),
                          device)
    correct = (predict_logits(copied, test, device=device).argmax(1) == test.labels).numpy()
    return {"reestimated_forget_test_acc": float(correct[test_forget].mean()),
            "reestimated_retain_test_acc": float(correct[~test_forget].mean())}
