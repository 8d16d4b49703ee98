"""The straightforward version of the reference method, kept as the benchmark baseline
(docs/algorithms.md §1.7): store every layer's activation matrix R (d x n, all columns), take a thin
SVD of it, form dense d x d projectors and P = I - (M_f - M_f M_r), then W <- W P^T.

Same inputs as oblivio's path (same samples, all patches, same alpha), so the two differ only
in how the linear algebra is done.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from oblivio.data.reader import Split
from oblivio.unlearn.classes.layers import input_columns, projectable_layers, weight_matrix


@torch.inference_mode()
def activations(model: nn.Module, split: Split, rows: np.ndarray, batch_size: int = 250,
                device: str = "cpu") -> dict[str, torch.Tensor]:
    """R per layer, as (groups, d, n) float64: every column kept in memory."""
    specs, _ = projectable_layers(model)
    modules = dict(model.named_modules())
    store: dict[str, list[torch.Tensor]] = {s.name: [] for s in specs}

    def hook(name: str):
        def pre_hook(module: nn.Module, args: tuple) -> None:
            store[name].append(input_columns(module, args[0].float()))
        return pre_hook

    handles = [modules[s.name].register_forward_pre_hook(hook(s.name)) for s in specs]
    try:
        for x, _ in split.batches(rows, batch_size):
            model(x.to(device))
    finally:
        for h in handles:
            h.remove()
    return {name: torch.cat(parts, 1).transpose(1, 2).double() for name, parts in store.items()}


def dense_projector(r: torch.Tensor, alpha: float) -> torch.Tensor:
    """M = U diag(lambda) U^T (groups, d, d) from a thin SVD of R."""
    u, s, _ = torch.linalg.svd(r, full_matrices=False)
    energy = s**2 / (s**2).sum(-1, keepdim=True)
    lam = alpha * energy / ((alpha - 1) * energy + 1)
    return (u * lam.unsqueeze(1)) @ u.transpose(1, 2)


@torch.no_grad()
def reference_forget(model: nn.Module, split: Split, retain_rows: np.ndarray,
                     forget_rows: np.ndarray, alpha_r: float, alpha_f: float,
                     device: str = "cpu") -> None:
    """Edit ``model`` in place the reference way, on ``device``."""
    model.to(device)
    r_acts = activations(model, split, retain_rows, device=device)
    f_acts = activations(model, split, forget_rows, device=device)
    modules = dict(model.named_modules())
    for name in r_acts:
        m_r = dense_projector(r_acts[name], alpha_r)
        m_f = dense_projector(f_acts[name], alpha_f)
        eye = torch.eye(m_r.shape[-1], dtype=torch.float64, device=device)
        p = eye - (m_f - m_f @ m_r)
        module = modules[name]
        w = weight_matrix(module).double()
        module.weight.copy_((w @ p.transpose(1, 2)).reshape(module.weight.shape).float())
