"""Batch-norm recalibration: re-estimate the running statistics on retain images after an
unlearning method has moved the weights.

Methods that step in train mode on a handful of forget images drag the running means and
variances towards those images; recalibrating separates that drift from what the weights
lost (docs/algorithms.md §2.3). Only buffers change, never a weight.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from oblivio.data.reader import Split


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, split: Split, rows: np.ndarray, batches: int,
                          batch_size: int, gen: torch.Generator, device: str) -> int:
    """Reset every batch-norm layer's running statistics and re-estimate them as the exact
    average over ``batches`` random batches of ``rows``. Returns the images seen (0 when the
    model has no batch norm or ``batches`` is 0)."""
    layers = batchnorm_layers(model)
    if not layers or batches < 1 or len(rows) == 0:
        return 0
    picked = rows[torch.randperm(len(rows), generator=gen)[:batches * batch_size].numpy()]
    if len(picked) % batch_size == 1:
        picked = picked[:-1]  # train-mode batch norm refuses a batch of one image
    if len(picked) == 0:
        return 0
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch counts the same
    was_training = model.training
    model.train()
    try:
        for start in range(0, len(picked), batch_size):
            x, _ = split.batch(picked[start:start + batch_size])
            model(x.to(device, memory_format=torch.channels_last))
    finally:
        for m, momentum in zip(layers, saved):
            m.momentum = momentum
        model.train(was_training)
    return len(picked)
