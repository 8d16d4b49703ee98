"""Depth of forgetting (docs/algorithms.md §4.3): how much of a forgotten class stays linearly
decodable from the penultimate features, whatever the head now says."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     l2: float = 1e-4, steps: int = 60) -> torch.nn.Linear:
    """Multinomial logistic regression by full-batch L-BFGS on standardised features (a few
    seconds for 60,000 x 512, where scikit-learn's lbfgs takes minutes)."""
    x = features.to(torch.float32, copy=True)  # copies are ordinary tensors, even when the
    labels = labels.clone()  # inputs were made under inference_mode
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std
    head = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=steps, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=1e-9)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(x), labels) + l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():  # fold the standardisation into the layer
        head.weight /= std
        head.bias -= head.weight @ mean
    return head.requires_grad_(False)


def probe_accuracy(head: torch.nn.Linear, features: torch.Tensor, labels: torch.Tensor) -> float:
    if len(labels) == 0:
        return float("nan")
    return float((head(features.float()).argmax(1) == labels).double().mean())
