"""Edit weights by the scaled-projector rule (ALGORITHMS.md 1.3-1.4), without d x d matrices.

With M = U diag(lambda) U^T and P = I - (M_f - M_f M_r), the update W <- W P^T is

    W_new = W - Q diag(lambda_f) U_f^T,   Q = W U_f - (W U_r) diag(lambda_r) (U_r^T U_f).

W U_f, W U_r and U_r^T U_f are computed once per layer; Q once per alpha_r; each
(alpha_r, alpha_f) pair then costs one (out x k_f) @ (k_f x d) product per layer, so a whole
alpha grid costs little more than one alpha. Products run in float32, the precision of the
weights themselves; importances are computed in float64.
Biases, norm layers and embeddings are never touched.
"""

from __future__ import annotations

import torch
from torch import nn

from oblivio.errors import OblivioError
from oblivio.unlearn.layers import weight_matrix
from oblivio.unlearn.subspaces import LayerSubspaces


def importance(energy: torch.Tensor, alpha: float) -> torch.Tensor:
    """lambda = alpha e / ((alpha - 1) e + 1), in [0, 1]; alpha = 1 gives lambda = e."""
    if alpha <= 0:
        raise OblivioError(f"alpha must be positive, got {alpha}")
    return alpha * energy / ((alpha - 1.0) * energy + 1.0)


class _Layer:
    def __init__(self, module: nn.Module, sub: LayerSubspaces, device: str) -> None:
        self.module = module
        w = weight_matrix(module).detach().to(device, torch.float32)
        self.w0 = module.weight.detach().clone()
        u_f = sub.forget.u.to(device, torch.float32)
        u_r = sub.retain.u.to(device, torch.float32)
        if u_f.shape[:2] != w.shape[:1] + w.shape[2:]:
            raise OblivioError(
                f"subspaces do not fit layer with weight {tuple(module.weight.shape)}")
        self.e_f = sub.forget.energy.to(device, torch.float64)
        self.e_r = sub.retain.energy.to(device, torch.float64)
        self.u_f_t = u_f.transpose(1, 2).contiguous()
        self.a = w @ u_f
        self.b = w @ u_r
        self.c = u_r.transpose(1, 2) @ u_f
        self._q: dict[float, torch.Tensor] = {}

    def delta(self, alpha_r: float, alpha_f: float) -> torch.Tensor:
        if alpha_r not in self._q:
            lam_r = importance(self.e_r, alpha_r)
            self._q[alpha_r] = self.a - (self.b * lam_r.float().unsqueeze(1)) @ self.c
        lam_f = importance(self.e_f, alpha_f).float()
        return -(self._q[alpha_r] * lam_f.unsqueeze(1)) @ self.u_f_t


class Projector:
    """Holds the per-layer factors of a model and applies any alpha pair to it in place."""

    def __init__(self, model: nn.Module, subspaces: dict[str, LayerSubspaces],
                 device: str = "cpu") -> None:
        modules = dict(model.named_modules())
        missing = [name for name in subspaces if name not in modules]
        if missing:
            raise OblivioError(f"subspaces name layers the model lacks: {', '.join(missing[:3])}")
        self.model = model
        self.layers = {name: _Layer(modules[name], sub, device)
                       for name, sub in subspaces.items()}

    @torch.no_grad()
    def apply(self, alpha_r: float, alpha_f: float) -> None:
        """Set every projected layer to W0 P(alpha_r, alpha_f)^T."""
        for layer in self.layers.values():
            delta = layer.delta(alpha_r, alpha_f).reshape(layer.w0.shape)
            layer.module.weight.copy_(layer.w0 + delta.to(layer.w0.dtype))

    @torch.no_grad()
    def restore(self) -> None:
        """Put the original weights back."""
        for layer in self.layers.values():
            layer.module.weight.copy_(layer.w0)
