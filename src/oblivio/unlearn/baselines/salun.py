"""SalUn (Fan et al., ICLR 2024): random-label unlearning on the salient weights only. The
saliency of a weight is |d CE(D_f) / d w|, the forget loss's gradient over one pass of the
forget images; the half with the largest saliency (the paper's threshold 0.5, over the whole
model) is updated, the rest only decays. The update is the random-label baseline's: a forget
batch relabelled at random and a retain batch in one step (the paper's lr 0.013); its budget
is in epochs over D_f, as for every baseline here, where the paper trains 10 epochs over
D_f and D_r together."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from oblivio.data.reader import Split
from oblivio.errors import OblivioError
from oblivio.training import seed_everything
from oblivio.unlearn.tuning import BaselineSettings, BatchDraw, descend_to, other_classes


@dataclass(frozen=True)
class SalunSettings(BaselineSettings):
    lr: float = 0.013
    saliency: float = 0.5  # share of the weights updated

    def check(self) -> None:
        super().check()
        if not 0 < self.saliency <= 1:
            raise OblivioError(f"saliency must be in (0, 1], got {self.saliency}")


def saliency_masks(model: nn.Module, split: Split, forget_rows: np.ndarray, batch_size: int,
                   share: float, device: str) -> dict[str, torch.Tensor]:
    """1 for the ``share`` of weights (over the whole model) with the largest |gradient| of
    the forget images' summed cross-entropy, 0 elsewhere."""
    model.eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    ce = nn.CrossEntropyLoss(reduction="sum")
    for x, y in split.batches(forget_rows, batch_size):
        x = x.to(device, memory_format=torch.channels_last)
        for (name, _), g in zip(params.items(), torch.autograd.grad(
                ce(model(x), y.to(device)), list(params.values()), allow_unused=True)):
            if g is not None:
                grads[name] += g
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    chosen = torch.zeros_like(flat)  # by rank, not by a threshold: ties at 0 are common
    chosen[torch.topk(flat, max(1, round(share * flat.numel())), sorted=False).indices] = 1
    return {n: m.view_as(grads[n]) for n, m in zip(grads, chosen.split(
        [g.numel() for g in grads.values()]))}


def salun(model: nn.Module, split: Split, forget_rows: np.ndarray, retain_rows: np.ndarray,
          num_classes: int, settings: SalunSettings, target: float, device: str,
          progress: bool = True) -> dict:
    """Random labels on D_f (plus a D_r batch) through the saliency mask, until the forget
    accuracy is at most ``target``."""
    gen = seed_everything(settings.seed)
    masks = saliency_masks(model, split, forget_rows, settings.batch_size, settings.saliency,
                           device)
    forget = BatchDraw(split, forget_rows, settings.batch_size, gen, device)
    retain = BatchDraw(split, retain_rows, settings.batch_size, gen, device)

    def wrong(y: torch.Tensor) -> torch.Tensor:
        return other_classes(y, num_classes, gen).to(device)
    result = descend_to(model, split, forget_rows, forget, retain, wrong, settings, target,
                         device, gen, "salun", progress, masks=masks)
    salient = sum(int(m.sum()) for m in masks.values())
    return result | {"salient_weights": salient,
                     "weights": sum(m.numel() for m in masks.values())}
