"""Weight importance for instance-wise unlearning (MAS, docs/algorithms.md §2.2).

Importance is how strongly the output norm on the forget instances reacts to each weight, with
no labels needed. Inverted and normalised per tensor it becomes an anchor weight in [0, 1]:
weights that matter for the forget instances move freely, the rest are held near their values.
"""

from __future__ import annotations

import torch
from torch import nn


def output_sensitivity(model: nn.Module, x: torch.Tensor, batch_size: int = 32
                       ) -> dict[str, torch.Tensor]:
    """Omega: the mean over batches of |d mean_i ||f(x_i)||_2 / d theta|, per parameter, in
    float64 (the model is evaluated in eval mode and left as it was)."""
    was_training = model.training
    model.eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    omega = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
    batches = range(0, len(x), batch_size)
    for start in batches:
        loss = model(x[start:start + batch_size]).norm(dim=1).mean()
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for name, grad in zip(params, grads):
            if grad is not None:
                omega[name] += grad.abs().double()
    model.train(was_training)
    return {n: o / len(batches) for n, o in omega.items()}


def anchor_weights(omega: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """w = 1 - (omega - min) / (max - min) per tensor, in float32. A tensor whose importances
    are all equal carries no information about the forget instances: it is fully anchored
    (w = 1) rather than divided by zero."""
    weights = {}
    for name, o in omega.items():
        low, high = o.min(), o.max()
        span = high - low
        scaled = (o - low) / span if span > 0 else torch.zeros_like(o)
        weights[name] = (1.0 - scaled).float()
    return weights
