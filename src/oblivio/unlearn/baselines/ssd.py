"""Selective synaptic dampening (Foster et al., AAAI 2024): training-free, it scales down the
parameters far more important to D_f than to D, by two diagonal Fisher estimates."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from oblivio.data.reader import Split
from oblivio.training import seed_everything
from oblivio.unlearn.tuning import BaselineSettings


def diagonal_fisher(model: nn.Module, split: Split, rows: np.ndarray, batch_size: int,
                    device: str, desc: str, progress: bool = True) -> dict[str, torch.Tensor]:
    """Mean over batches of the squared CE gradient, per parameter (float64), in eval mode."""
    model.eval()
    params = dict(model.named_parameters())
    fisher = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
    ce = nn.CrossEntropyLoss()
    batches = 0
    for x, y in tqdm(split.batches(rows, batch_size), total=math.ceil(len(rows) / batch_size),
                     desc=desc, unit="batch", disable=not progress, dynamic_ncols=True):
        x = x.to(device, memory_format=torch.channels_last)
        grads = torch.autograd.grad(ce(model(x), y.to(device)), list(params.values()),
                                    allow_unused=True)
        for name, g in zip(params, grads):
            if g is not None:
                fisher[name] += g.double().pow(2)
        batches += 1
    return {n: f / batches for n, f in fisher.items()}


@torch.no_grad()
def dampen(model: nn.Module, fisher_forget: dict[str, torch.Tensor],
           fisher_all: dict[str, torch.Tensor], alpha: float, lam: float) -> int:
    """SSD: where F_f > alpha F_D, scale the parameter by min(1, lam F_D / F_f). Returns the
    number of parameters dampened."""
    changed = 0
    for name, p in model.named_parameters():
        ff, fd = fisher_forget[name], fisher_all[name]
        selected = ff > alpha * fd
        factor = torch.where(selected, (lam * fd / ff.clamp_min(1e-300)).clamp(max=1.0),
                             torch.ones_like(ff))
        p.mul_(factor.to(p.dtype))
        changed += int(selected.sum())
    return changed


def ssd(model: nn.Module, split: Split, forget_rows: np.ndarray, all_rows: np.ndarray,
        settings: BaselineSettings, device: str, progress: bool = True) -> dict:
    """Selective synaptic dampening: training-free, from two diagonal Fisher estimates."""
    gen = seed_everything(settings.seed)
    rows = all_rows
    if settings.fisher_samples and settings.fisher_samples < len(all_rows):
        rows = np.sort(all_rows[torch.randperm(len(all_rows), generator=gen)
                                [:settings.fisher_samples].numpy()])
    fisher_all = diagonal_fisher(model, split, rows, settings.batch_size, device, "fisher D",
                                 progress)
    fisher_forget = diagonal_fisher(model, split, forget_rows, settings.batch_size, device,
                                    "fisher D_f", progress)
    dampened = dampen(model, fisher_forget, fisher_all, settings.ssd_alpha, settings.ssd_lambda)
    return {"dampened_parameters": dampened, "fisher_rows": len(rows)}
