"""The gradient baselines (docs/algorithms.md §3): fine-tune on D_r, NegGrad and NegGrad+ (ascent
on D_f, with descent on D_r), and random labels on D_f. Each changes a model in place and
reports its steps."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from oblivio.data.reader import Split
from oblivio.training import seed_everything
from oblivio.unlearn.guard import RetainGuard
from oblivio.unlearn.tuning import (
    GUARD_ROWS,
    BaselineSettings,
    BatchDraw,
    descend_to,
    forget_and_retain,
    forget_stop,
    optimise,
    other_classes,
    steps_for,
)


def finetune(model: nn.Module, split: Split, retain_rows: np.ndarray, settings: BaselineSettings,
             device: str, progress: bool = True) -> dict:
    """Cross-entropy on D_r only: forgetting by catastrophic interference."""
    gen = seed_everything(settings.seed)
    draw = BatchDraw(split, retain_rows, settings.batch_size, gen, device)
    ce = nn.CrossEntropyLoss()

    def loss() -> torch.Tensor:
        x, y = draw()
        return ce(model(x), y)
    return optimise(model, settings, steps_for(retain_rows, settings), loss, None, "finetune",
                     progress)


def neggrad(model: nn.Module, split: Split, forget_rows: np.ndarray, retain_rows: np.ndarray,
            settings: BaselineSettings, target: float, device: str, plus: bool = False,
            progress: bool = True, loss_scale: float = 1.0) -> dict:
    """Gradient ascent on D_f until its accuracy is at most ``target``; NegGrad+ (``plus``)
    adds descent on a D_r batch in the same step. With ``settings.retain_guard``, steps that
    harm the retain images are undone (budget x ``loss_scale``, the unseen mean loss)."""
    gen, forget, retain = forget_and_retain(split, forget_rows, retain_rows, settings, device)
    ce = nn.CrossEntropyLoss()

    def loss() -> torch.Tensor:
        x, y = forget()
        value = -ce(model(x), y)
        if plus:
            xr, yr = retain()
            value = value + ce(model(xr), yr)
        return value
    stop = forget_stop(model, split, forget_rows, target, device, gen)
    guard = None if settings.retain_guard is None else RetainGuard(
        model, split, retain_rows, settings.retain_guard, loss_scale, gen, GUARD_ROWS, device)
    return optimise(model, settings, steps_for(forget_rows, settings), loss, stop,
                     "neggrad+" if plus else "neggrad", progress, guard)


def random_label(model: nn.Module, split: Split, forget_rows: np.ndarray,
                 retain_rows: np.ndarray, num_classes: int, settings: BaselineSettings,
                 target: float, device: str, progress: bool = True) -> dict:
    """Cross-entropy towards random wrong labels on D_f, plus a D_r batch in the same step."""
    gen, forget, retain = forget_and_retain(split, forget_rows, retain_rows, settings, device)

    def wrong(y: torch.Tensor) -> torch.Tensor:
        return other_classes(y, num_classes, gen).to(device)
    return descend_to(model, split, forget_rows, forget, retain, wrong, settings, target,
                       device, gen, "random-label", progress)
