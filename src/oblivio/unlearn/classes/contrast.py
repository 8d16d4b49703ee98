"""Class forgetting by energy contrast: remove the input directions the forget set uses far more
than the retain set. Training-free, from the same statistics as the scaled projection, and a
better trade-off where the retain and forget subspaces overlap (a ViT).

Per layer, with per-column second moments C_r = G_r / n_r and C_f = G_f / n_f, the generalised
eigenvectors C_f v = ratio C_r v give each direction's forget-to-retain energy ratio. A direction
the forget class shares equally with every retain class has ratio 1; one it shares with a single
retain class out of nine, about 9; one only it uses, infinity. The edit removes the inputs'
components along the directions whose ratio exceeds ``tau``:

    W <- W (I - C_r V_k V_k^T)         (V^T C_r V = I, so C_r V_k V_k^T is the projector onto
                                         those directions along the others)

which keeps every retain input unchanged in the directions that stay. ``tau`` is the one knob,
chosen on the validation split like alpha.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from oblivio.errors import OblivioError
from oblivio.unlearn.classes.layers import last_blocks, layer_blocks, weight_matrix
from oblivio.unlearn.classes.statistics import LayerStat, Statistics

RIDGE = 1e-4
RATIOS = (64.0, 45.25, 32.0, 22.63, 16.0, 11.31, 8.0, 5.66, 4.0, 2.83, 2.0)


@dataclass
class ContrastBasis:
    """Per group, the directions with ratio of at least ``floor``, largest ratio first:
    V (groups, d, k), C_r V (groups, d, k) and the ratios (groups, k), zero-padded where
    groups keep different numbers."""

    v: torch.Tensor
    dual: torch.Tensor
    ratio: torch.Tensor


def _moments(retain: LayerStat, forget: LayerStat) -> tuple[torch.Tensor | None, torch.Tensor,
                                                             torch.Tensor]:
    """(Q, C_r, C_f), with both moments expressed in an orthonormal basis Q (groups, d, m) of
    the columns' span when the columns are fewer than the fan-in (Q None: the full space).
    Directions outside the span carry no energy in either set, so the edit leaves them alone."""
    if retain.factor is not None and forget.factor is not None:
        d = retain.factor.shape[-1]
        if retain.count + forget.count < d:
            fr, ff = retain.factor.double(), forget.factor.double()
            q = torch.linalg.qr(torch.cat([fr, ff], 1).transpose(1, 2)).Q
            fr, ff = fr @ q, ff @ q
            return q, fr.transpose(1, 2) @ fr / retain.count, ff.transpose(1, 2) @ ff / forget.count
    return (None, retain.as_gram().double() / retain.count,
            forget.as_gram().double() / forget.count)


def contrast_basis(retain: LayerStat, forget: LayerStat, floor: float = min(RATIOS)
                   ) -> ContrastBasis:
    """The generalised eigenbasis of one layer, directions with ratio below ``floor`` left out.
    C_r is regularised by RIDGE times its mean eigenvalue: directions the retain set barely
    uses then get a large but finite ratio."""
    if retain.count == 0 or forget.count == 0:
        raise OblivioError("contrast needs statistics of non-empty retain and forget sets")
    q, cr, cf = _moments(retain, forget)
    m = cr.shape[-1]
    eye = torch.eye(m, dtype=cr.dtype, device=cr.device)
    mean = cr.diagonal(dim1=1, dim2=2).sum(-1) / m
    reg = cr + (RIDGE * torch.where(mean > 0, mean, 1.0))[:, None, None] * eye
    chol, info = torch.linalg.cholesky_ex(reg)
    if bool((info > 0).any()):
        raise OblivioError("retain statistic is not positive semi-definite")
    half = torch.linalg.solve_triangular(chol, cf, upper=False)
    whitened = torch.linalg.solve_triangular(chol, half.transpose(1, 2), upper=False)
    ratio, w = torch.linalg.eigh((whitened + whitened.transpose(1, 2)) / 2)
    ratio, w = ratio.flip(-1), w.flip(-1)
    v = torch.linalg.solve_triangular(chol.transpose(1, 2), w, upper=True)
    dual = reg @ v
    keep = ratio >= floor
    k = max(1, int(keep.sum(-1).max()))
    v, dual, ratio = v[..., :k], dual[..., :k], torch.where(keep, ratio, 0.0)[..., :k]
    if q is not None:
        v, dual = q @ v, q @ dual
    return ContrastBasis(v.float().contiguous(), dual.float().contiguous(), ratio)


def contrast_bases(retain: Statistics, forget: Statistics, floor: float = min(RATIOS)
                   ) -> dict[str, ContrastBasis]:
    """Every layer's contrast basis (directions with ratio below ``floor`` left out)."""
    if list(retain.layers) != list(forget.layers):
        raise OblivioError("retain and forget statistics come from different models")
    return {name: contrast_basis(retain.layers[name], forget.layers[name], floor)
            for name in retain.layers}


class ContrastProjector:
    """Holds every layer's contrast basis and applies any ``tau`` to the model in place, to every
    layer or to the layers of the network's last few blocks."""

    def __init__(self, model: nn.Module, bases: dict[str, ContrastBasis], device: str = "cpu"
                 ) -> None:
        modules = dict(model.named_modules())
        missing = [name for name in bases if name not in modules]
        if missing:
            raise OblivioError(f"statistics name layers the model lacks: {', '.join(missing[:3])}")
        self.model, self.device = model, device
        self.layers: dict[str, tuple[nn.Module, torch.Tensor, ContrastBasis, torch.Tensor]] = {}
        for name, basis in bases.items():
            module = modules[name]
            w = weight_matrix(module).detach().to(device, torch.float32, copy=True)
            if basis.v.shape[1] != w.shape[2]:
                raise OblivioError(
                    f"statistics do not fit layer {name} with weight {tuple(module.weight.shape)}")
            basis = ContrastBasis(basis.v.to(device), basis.dual.to(device),
                                  basis.ratio.to(device))
            self.layers[name] = (module, module.weight.detach().clone(), basis, w @ basis.dual)
        self.blocks = layer_blocks(list(self.layers))
        self.applied: tuple[float, int] | None = None

    @classmethod
    def from_statistics(cls, model: nn.Module, retain: Statistics, forget: Statistics,
                        device: str = "cpu", floor: float = min(RATIOS)) -> ContrastProjector:
        return cls(model, contrast_bases(retain, forget, floor), device)

    def last_blocks(self, blocks: int | None) -> list[str]:
        """The layers of the last ``blocks`` blocks (every layer when None)."""
        return last_blocks(self.blocks, blocks)

    def edit(self, tau: float, blocks: int | None = None) -> tuple[tuple[str, int], ...]:
        """(layer, directions removed) for each edited layer ``tau`` removes any from: equal
        edits are equal models, since each layer removes its largest-ratio directions."""
        counts = ((name, int((self.layers[name][2].ratio > tau).sum()))
                  for name in self.last_blocks(blocks))
        return tuple((name, n) for name, n in counts if n)

    def removed(self, tau: float, blocks: int | None = None) -> int:
        """How many directions ``tau`` removes over the edited layers and their groups."""
        return sum(n for _, n in self.edit(tau, blocks))

    @torch.no_grad()
    def apply(self, tau: float, blocks: int | None = None) -> None:
        """Set the layers of the last ``blocks`` blocks (all when None) to W0 (I - C_r V_k V_k^T),
        V_k the directions with ratio > tau, and every other layer back to W0."""
        if tau <= 0:
            raise OblivioError(f"the ratio threshold must be positive, got {tau}")
        edited = set(self.last_blocks(blocks))
        key = (tau, len(self.blocks) if blocks is None else blocks)
        if self.applied == key:
            return
        for name, (module, w0, basis, w_dual) in self.layers.items():
            if name not in edited:
                module.weight.copy_(w0)
                continue
            mask = (basis.ratio > tau).to(w_dual.dtype).unsqueeze(1)
            delta = (w_dual * mask) @ basis.v.transpose(1, 2)
            module.weight.copy_(w0 - delta.reshape(w0.shape).to(w0.dtype))
        self.applied = key

    @torch.no_grad()
    def restore(self) -> None:
        for module, w0, _, _ in self.layers.values():
            module.weight.copy_(w0)
        self.applied = None
