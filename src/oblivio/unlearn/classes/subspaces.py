"""Eigenbases of each layer's input statistic: G = U diag(sigma^2) U^T (docs/algorithms.md §1.3).

Computed once per sample set, and only as wide as the statistic's rank: from the n x n side
when the layer saw fewer columns than its fan-in. Decompositions run in float32 (2-2.5x faster
than float64 here; the Gram itself is accumulated in float64): eigenvalues are then exact to
about 1e-7 of the largest, and directions below that energy share are dropped, since their
importance lambda = alpha e / ((alpha - 1) e + 1) stays under 1e-4 for every alpha of the grid.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch

from oblivio.errors import OblivioError
from oblivio.tensorfile import read_tensors, write_tensors
from oblivio.unlearn.classes.statistics import LayerStat, Statistics

FORMAT = "oblivio-subspaces/1"
ENERGY_FLOOR = 1e-7


@dataclass
class Basis:
    """Per group: orthonormal directions U (groups, d, k) and energy shares e (groups, k),
    padded with zero energy where groups keep different ranks."""

    u: torch.Tensor
    energy: torch.Tensor


def _eigh_desc(sym: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenpairs of symmetric PSD matrices, largest first; falls back to SVD where LAPACK's
    eigh fails to converge (seen on rank-deficient Grams)."""
    try:
        values, vectors = torch.linalg.eigh(sym)
    except torch.linalg.LinAlgError:
        vectors, values, _ = torch.linalg.svd(sym)
        return values.clamp_min(0), vectors
    return values.flip(-1).clamp_min(0), vectors.flip(-1)


def basis_of(stat: LayerStat) -> Basis:
    """The eigenbasis of one layer's statistic."""
    if stat.factor is not None:
        f = stat.factor.float()  # (g, n, d), G = f^T f
        values, v = _eigh_desc(f @ f.transpose(1, 2))  # small side, n x n
        sigma = values.sqrt()
        keep = sigma > sigma[..., :1] * 1e-7
        u = (f.transpose(1, 2) @ v) / torch.where(keep, sigma, 1.0).unsqueeze(1)
        u = u * keep.unsqueeze(1)
        values, u = values.double(), u.double()
    else:
        values, u = _eigh_desc(stat.gram.float())
        values, u = values.double(), u.double()
    total = values.sum(-1, keepdim=True)
    energy = torch.where(total > 0, values / total.clamp_min(1e-300), 0.0)
    k = int((energy > ENERGY_FLOOR).sum(-1).max().clamp_min(1))
    return Basis(u[..., :k].contiguous(), torch.where(energy[..., :k] > ENERGY_FLOOR,
                                                       energy[..., :k], 0.0))


@dataclass
class LayerSubspaces:
    retain: Basis
    forget: Basis


def compute_subspaces(retain: Statistics, forget: Statistics) -> dict[str, LayerSubspaces]:
    """Retain and forget eigenbases of every layer."""
    if list(retain.layers) != list(forget.layers):
        raise OblivioError("retain and forget statistics come from different models")
    return {name: LayerSubspaces(basis_of(retain.layers[name]), basis_of(forget.layers[name]))
            for name in retain.layers}


def save_subspaces(subspaces: dict[str, LayerSubspaces], uri: str | os.PathLike[str]) -> None:
    """One safetensors file of every layer's two bases."""
    tensors = {}
    for name, sub in subspaces.items():
        for part in ("retain", "forget"):
            basis = getattr(sub, part)
            tensors[f"{name}.{part}.u"] = basis.u
            tensors[f"{name}.{part}.energy"] = basis.energy
    write_tensors(uri, tensors, FORMAT, {"layers": json.dumps(list(subspaces))})


def load_subspaces(uri: str | os.PathLike[str]) -> dict[str, LayerSubspaces]:
    """Read subspaces written by :func:`save_subspaces` (never unpickles)."""
    tensors, meta = read_tensors(uri, FORMAT)
    return {
        name: LayerSubspaces(*(Basis(tensors[f"{name}.{p}.u"], tensors[f"{name}.{p}.energy"])
                               for p in ("retain", "forget")))
        for name in json.loads(meta["layers"])
    }
