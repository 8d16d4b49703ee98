"""The fine-tuning loop every gradient method shares (the baselines, relabel, SalUn, AMUN):
batches drawn without replacement, SGD with cosine decay, a stopping rule checked after each
step, and the retain guard that undoes a harmful step and halves the step size. Budgets are in
epochs over the data a method learns from, so a run states what it cost; a wall-clock cap
(``max_seconds``, shared by every iterative method) stops the steps where a budget in time
ends, so methods can be compared, or a deletion bounded, at equal seconds."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from oblivio.data.reader import Split
from oblivio.errors import OblivioError
from oblivio.models.inference import accuracy
from oblivio.training import seed_everything
from oblivio.unlearn.guard import RetainGuard

CHECK_ROWS = 512  # forget rows watched by the stopping rule
GUARD_ROWS = 256  # retain rows watched by the retain guard
MAX_HALVINGS = 8


@dataclass(frozen=True)
class BaselineSettings:
    epochs: float = 1.0  # over D_r (finetune) or D_f (neggrad, neggrad+, random-label, relabel)
    lr: float = 0.01
    batch_size: int = 128
    forget_target: float | None = None  # None: 0 for instances, 0.01 for classes
    ssd_alpha: float = 10.0
    ssd_lambda: float = 1.0
    fisher_samples: int | None = None  # None: SSD's Fisher over all of D
    # neggrad, neggrad+, relabel: None runs the method as published; a budget undoes steps that
    # raise the loss of 256 retain images by more than this x the test split's mean loss, and
    # halves the step (oblivio.unlearn.guard), at most 8 times
    retain_guard: float | None = None
    max_seconds: float | None = None  # wall-clock cap on the steps; None: the epochs alone
    seed: int = 0

    def check(self) -> None:
        if self.epochs <= 0 or self.lr <= 0 or self.batch_size < 1:
            raise OblivioError("epochs, learning rate and batch size must be positive")
        check_max_seconds(self.max_seconds)
        if self.forget_target is not None and not 0 <= self.forget_target <= 1:
            raise OblivioError(f"forget target must be in [0, 1], got {self.forget_target}")
        if self.retain_guard is not None and self.retain_guard <= 0:
            raise OblivioError("retain guard must be positive")
        if self.ssd_alpha <= 0 or self.ssd_lambda <= 0:
            raise OblivioError("SSD's alpha and lambda must be positive")
        if self.fisher_samples is not None and self.fisher_samples < 1:
            raise OblivioError(f"--fisher-samples must be at least 1 (leave it out for all), "
                               f"got {self.fisher_samples}")


def check_max_seconds(seconds: float | None) -> None:
    if seconds is not None and not seconds > 0:
        raise OblivioError(f"max seconds must be positive, got {seconds}")


class Deadline:
    """The wall-clock cap of a method's steps, from when its loop starts (None: no cap).
    ``passed()`` is checked after a step, so the step under way always finishes."""

    def __init__(self, seconds: float | None) -> None:
        self.end = None if seconds is None else time.perf_counter() + seconds
        self.hit = False

    def passed(self) -> bool:
        self.hit = self.hit or (self.end is not None and time.perf_counter() >= self.end)
        return self.hit


class BatchDraw:
    """Random batches of rows, reshuffled each pass, on the model's device; ``labels`` (one per
    row of the split) replaces the split's labels."""

    def __init__(self, split: Split, rows: np.ndarray, batch_size: int, gen: torch.Generator,
                 device: str, labels: torch.Tensor | None = None) -> None:
        self.split, self.rows, self.size = split, rows, batch_size
        self.gen, self.device, self.labels = gen, device, labels
        self.order: np.ndarray = np.empty(0, dtype=np.int64)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.order) < min(self.size, len(self.rows)):
            perm = torch.randperm(len(self.rows), generator=self.gen).numpy()
            self.order = np.concatenate([self.order, self.rows[perm]])
        take, self.order = self.order[:self.size], self.order[self.size:]
        x, y = self.split.batch(take)
        if self.labels is not None:
            y = self.labels[torch.as_tensor(take)]
        return x.to(self.device, memory_format=torch.channels_last), y.to(self.device)


def other_classes(labels: torch.Tensor, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """A class drawn uniformly from the classes other than each label (never a collision)."""
    shift = torch.randint(1, num_classes, labels.shape, generator=gen)
    return (labels.cpu() + shift) % num_classes


def optimise(model: nn.Module, settings: BaselineSettings, steps: int,
              loss_of: Callable[[], torch.Tensor], stop: Callable[[], bool] | None,
              desc: str, progress: bool, guard: RetainGuard | None = None,
              masks: dict[str, torch.Tensor] | None = None) -> dict:
    """SGD (momentum 0.9, cosine decay over the budget) for up to ``steps`` steps, stopping as
    soon as ``stop()`` holds after a step or ``settings.max_seconds`` have passed; with a
    ``guard``, a step it undoes halves the step size (and clears the momentum), and the 9th
    undone step ends the run; with ``masks`` (per parameter name) only the masked gradients are
    kept."""
    params = dict(model.named_parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9,
                                weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
    done = stop() if stop else False
    taken = 0
    deadline = Deadline(settings.max_seconds)
    for _ in tqdm(range(steps), desc=desc, unit="step", disable=not progress or done,
                  dynamic_ncols=True):
        if done:
            break
        model.train()
        loss = loss_of()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for name, mask in (masks or {}).items():
            if params[name].grad is not None:
                params[name].grad.mul_(mask)
        optimizer.step()
        schedule.step()
        taken += 1
        if guard is not None and not guard.holds(model, taken):
            if len(guard.halved_at) > MAX_HALVINGS:
                break
            schedule.base_lrs = [lr / 2 for lr in schedule.base_lrs]
            for group in optimizer.param_groups:
                group["lr"] /= 2
            optimizer.state.clear()
        done = stop() if stop else False
        if deadline.passed():  # after the step, as the other loops: a budget takes one at least
            break
    model.eval()
    result = {"steps": taken, "budget_steps": steps, "stopped_early": bool(stop and done),
              "cap_hit": bool(stop and not done),
              "deadline_hit": deadline.hit and not (stop and done)}
    if guard is not None:
        result |= guard.report(model) | {"guard_stopped": len(guard.halved_at) > MAX_HALVINGS}
    return result


def steps_for(rows: np.ndarray, settings: BaselineSettings) -> int:
    """Steps for ``settings.epochs`` passes over ``rows``: a request smaller than a batch is
    one batch, so one pass is one step."""
    return max(1, math.ceil(settings.epochs * len(rows) / min(settings.batch_size, len(rows))))


def forget_stop(model: nn.Module, split: Split, forget_rows: np.ndarray, target: float,
                 device: str, gen: torch.Generator) -> Callable[[], bool]:
    """Holds once accuracy on (up to CHECK_ROWS of) the forget rows is at most ``target``."""
    watched = forget_rows[torch.randperm(len(forget_rows), generator=gen)[:CHECK_ROWS].numpy()]
    return lambda: accuracy(model, split, watched, device=device) <= target


def forget_and_retain(split: Split, forget_rows: np.ndarray, retain_rows: np.ndarray,
                       settings: BaselineSettings, device: str
                       ) -> tuple[torch.Generator, BatchDraw, BatchDraw]:
    gen = seed_everything(settings.seed)
    return (gen, BatchDraw(split, forget_rows, settings.batch_size, gen, device),
            BatchDraw(split, retain_rows, settings.batch_size, gen, device))


def descend_to(model: nn.Module, split: Split, forget_rows: np.ndarray, forget: BatchDraw,
               retain: BatchDraw, relabelled: Callable[[torch.Tensor], torch.Tensor] | None,
               settings: BaselineSettings, target: float, device: str, gen: torch.Generator,
               desc: str, progress: bool, guard: RetainGuard | None = None,
               masks: dict[str, torch.Tensor] | None = None) -> dict:
    """Cross-entropy on a D_f batch (its labels through ``relabelled``) and a D_r batch in one
    pass, until the forget accuracy on the given labels is at most ``target``."""
    ce = nn.CrossEntropyLoss()

    def loss() -> torch.Tensor:
        x, y = forget()
        xr, yr = retain()
        y = y if relabelled is None else relabelled(y)
        return ce(model(torch.cat([x, xr])), torch.cat([y, yr]))
    stop = forget_stop(model, split, forget_rows, target, device, gen)
    return optimise(model, settings, steps_for(forget_rows, settings), loss, stop, desc, progress,
                     guard, masks)
