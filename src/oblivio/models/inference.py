"""Batched, gradient-free prediction: the one place that turns a split into logits."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from oblivio.data.reader import Split


@torch.inference_mode()
def predict_logits(model: nn.Module, split: Split, rows: np.ndarray | None = None,
                   batch_size: int = 1024, device: str = "cpu") -> torch.Tensor:
    """Logits (float32, on the CPU) for ``rows`` of ``split`` (all rows when None)."""
    was_training = model.training
    model.eval()
    outs = [model(x.to(device)).float().cpu() for x, _ in split.batches(rows, batch_size)]
    model.train(was_training)
    return torch.cat(outs)


def accuracy(model: nn.Module, split: Split, rows: np.ndarray | None = None,
             device: str = "cpu") -> float:
    """Top-1 accuracy in [0, 1] on ``rows`` of ``split``."""
    logits = predict_logits(model, split, rows, device=device)
    labels = split.labels if rows is None else split.labels[torch.as_tensor(rows)]
    return float((logits.argmax(1) == labels).float().mean())
