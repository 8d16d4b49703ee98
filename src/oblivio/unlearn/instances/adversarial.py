"""Targeted L2 PGD and the adversarial bank of instance-wise unlearning (docs/algorithms.md §2.1).

The bank holds, for each forget instance, examples just across the decision boundary towards
other classes, labelled with their TARGET class. Training on them while pushing the forget
instances away keeps the boundaries near those instances where they were, which is what spares
the rest of the data. Pixels are in [0, 1] (normalisation lives inside the model), so epsilon
is in pixel space.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from oblivio.unlearn.tuning import other_classes


def _l2_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.ndim - 1)))


def l2_pgd(model: nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float = 4.0,
           step: float = 0.1, iters: int = 100, gen: torch.Generator | None = None,
           away: bool = False) -> torch.Tensor:
    """Targeted L2 PGD from a random start in the eps-ball: each step moves ``step`` along the
    L2-normalised gradient that lowers CE towards ``target`` (``away``: raises it, untargeted
    PGD away from the true label), then projects onto the eps-ball and clips to [0, 1]. The
    whole batch moves at once; the model's parameters get no grad."""
    noise = torch.randn(x.shape, generator=gen).to(x.device)
    radius = eps * torch.rand(len(x), generator=gen).to(x.device).view(-1, *([1] * (x.ndim - 1)))
    delta = ((x + noise / _l2_norm(noise) * radius).clamp(0, 1) - x).detach()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")  # a sum: each sample's own gradient
    for _ in range(iters):
        delta.requires_grad_(True)
        grad, = torch.autograd.grad(loss_fn(model(x + delta), target), delta)
        with torch.no_grad():
            delta = delta + (step if away else -step) * grad / _l2_norm(grad)
            delta = delta * (eps / _l2_norm(delta)).clamp(max=1.0)
            delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def adversarial_bank(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                     per_instance: int, gen: torch.Generator, eps: float = 4.0,
                     step: float = 0.1, iters: int = 100, batch_size: int = 512,
                     progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_instance`` targeted adversarial examples of each (x, y), from ``model`` in eval
    mode: (images, target labels), on ``x``'s device."""
    was_training = model.training
    model.eval()
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    source = x.repeat_interleave(per_instance, dim=0)
    targets = other_classes(y.repeat_interleave(per_instance), num_classes, gen).to(x.device)
    out = torch.empty_like(source)
    try:
        for start in tqdm(range(0, len(source), batch_size), desc="adversarial bank",
                          unit="batch", disable=not progress, dynamic_ncols=True):
            end = start + batch_size
            out[start:end] = l2_pgd(model, source[start:end], targets[start:end], eps, step,
                                    iters, gen)
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(was_training)
    return out, targets
