"""relabel: forget mislabelled training images the way a retrain does, by moving each towards
the class the model ranks second, which for an image memorised under a wrong label is usually
the class it shows (docs/algorithms.md). Built on the shared fine-tuning loop, retain guard on;
``oblivio forget --method relabel`` runs it through ``baselines.run``'s wrapper."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from oblivio.data.reader import Split
from oblivio.models.inference import predict_logits
from oblivio.training import seed_everything
from oblivio.unlearn.guard import RetainGuard
from oblivio.unlearn.tuning import GUARD_ROWS, BaselineSettings, BatchDraw, descend_to


@dataclass(frozen=True)
class RelabelSettings(BaselineSettings):
    """relabel's defaults: a cap of 100 epochs over the request (it stops once no image keeps
    its label, in about 10 steps on the bench) and the retain guard on."""
    epochs: float = 100.0
    retain_guard: float | None = 0.1


def runner_up(model: nn.Module, split: Split, rows: np.ndarray, device: str) -> torch.Tensor:
    """Each image's most likely class other than its label. For an image the model memorised
    under a wrong label this is usually the class it shows (56 of the bench's 64), which is
    what a model retrained without it predicts."""
    logits = predict_logits(model, split, rows, device=device).clone()  # out of inference mode
    logits[torch.arange(len(rows)), split.labels[torch.as_tensor(rows)]] = -torch.inf
    return logits.argmax(1)


def relabel(model: nn.Module, split: Split, forget_rows: np.ndarray, retain_rows: np.ndarray,
            settings: BaselineSettings, target: float, device: str, progress: bool = True,
            loss_scale: float = 1.0) -> dict:
    """Descent towards each forget image's runner-up class (fixed at the start), plus a D_r
    batch in the same step, until its accuracy on the given labels is at most ``target``.
    Unlike NegGrad's ascent the loss is bounded, so it stops where a retrain's prediction is
    rather than pushing the images' loss without end; the retain guard as for NegGrad+."""
    gen = seed_everything(settings.seed)
    labels = split.labels.clone()
    labels[torch.as_tensor(forget_rows)] = runner_up(model, split, forget_rows, device).cpu()
    forget = BatchDraw(split, forget_rows, settings.batch_size, gen, device, labels)
    retain = BatchDraw(split, retain_rows, settings.batch_size, gen, device)
    guard = None if settings.retain_guard is None else RetainGuard(
        model, split, retain_rows, settings.retain_guard, loss_scale, gen, GUARD_ROWS, device)
    return descend_to(model, split, forget_rows, forget, retain, None, settings, target, device,
                       gen, "relabel", progress, guard)
