"""SCRUB (Kurmanji et al., NeurIPS 2023): the unlearned model is a student of the original.
On the forget images it moves away from the teacher (max-steps, ascent on the KL divergence),
on the retain images it stays with it (min-steps: cross-entropy plus a little KL). Defaults are
the authors' (SGD lr 5e-4, momentum 0.9, weight decay 5e-4, temperature 4, CE weight 0.99, KL
weight 0.001, max-steps in the first epochs only). One epoch is a pass over the forget images
and, as in their small-scale code, as many retain batches as the retain images fill; a run
that budgets fewer (``retain_batches``) says so in its provenance.

SCRUB+R (``rewind``), the authors' variant for deletion requests: a forget error far above
that of images the model never saw tells an attacker which images were forgotten. So a
checkpoint is kept after every epoch (and the start), and the one whose forget error is closest
to the original's error on unseen reference images is returned."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from oblivio.data.reader import Split
from oblivio.errors import OblivioError
from oblivio.models.inference import accuracy
from oblivio.training import seed_everything
from oblivio.unlearn.tuning import BaselineSettings, BatchDraw, Deadline


@dataclass(frozen=True)
class ScrubSettings(BaselineSettings):
    epochs: float = 3.0  # SCRUB epochs
    lr: float = 5e-4
    max_epochs: int = 2  # epochs that start with the max-steps over D_f (the authors' msteps)
    temperature: float = 4.0
    ce_weight: float = 0.99  # gamma
    kl_weight: float = 0.001  # alpha
    forget_batch_size: int = 64
    retain_batches: int | None = None  # min-steps per epoch; None: a pass over D_r
    rewind: bool = False  # SCRUB+R: back to the epoch whose forget error is the unseen one's

    def check(self) -> None:
        super().check()
        if self.epochs != int(self.epochs):
            raise OblivioError(f"SCRUB runs whole epochs, got {self.epochs}")
        if self.max_epochs < 0 or self.temperature <= 0 or self.forget_batch_size < 1:
            raise OblivioError("SCRUB's max epochs must be >= 0, its temperature and forget "
                               "batch size positive")
        if self.retain_batches is not None and self.retain_batches < 1:
            raise OblivioError("retain batches must be positive")


def distill_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) at a temperature, scaled by T^2 (Hinton et al.'s KD loss)."""
    log_s = torch.log_softmax(student / temperature, 1)
    p_t = torch.softmax(teacher / temperature, 1)
    return nn.functional.kl_div(log_s, p_t, reduction="batchmean") * temperature ** 2


def _error(model: nn.Module, split: Split, rows: np.ndarray, device: str) -> float:
    return 1.0 - accuracy(model, split, rows, device)


def scrub(model: nn.Module, split: Split, forget_rows: np.ndarray, retain_rows: np.ndarray,
          settings: ScrubSettings, device: str, progress: bool = True,
          reference: tuple[Split, np.ndarray] | None = None) -> dict:
    """Train ``model`` in place as SCRUB's student of a frozen copy of itself; with
    ``settings.rewind``, rewind it to the epoch whose forget error is closest to the
    original's error on the ``reference`` images (unseen ones)."""
    if settings.rewind and reference is None:
        raise OblivioError("SCRUB+R needs unseen reference images to rewind to")
    gen = seed_everything(settings.seed)
    teacher = copy.deepcopy(model).eval()
    kept: list[tuple[float, dict]] = []  # (forget error, weights on the CPU) per epoch

    def keep() -> None:
        kept.append((_error(model, split, forget_rows, device),
                     {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}))
    if settings.rewind:
        keep()
    forget = BatchDraw(split, forget_rows, settings.forget_batch_size, gen, device)
    retain = BatchDraw(split, retain_rows, settings.batch_size, gen, device)
    per_pass = math.ceil(len(forget_rows) / min(settings.forget_batch_size, len(forget_rows)))
    retain_steps = settings.retain_batches or math.ceil(len(retain_rows) / settings.batch_size)
    epochs = int(settings.epochs)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9,
                                weight_decay=5e-4)
    ce = nn.CrossEntropyLoss()
    total = sum((per_pass if e < settings.max_epochs else 0) + retain_steps
                for e in range(epochs))
    bar = tqdm(total=total, desc="scrub", unit="step", disable=not progress,
               dynamic_ncols=True)
    max_steps = min_steps = 0
    deadline = Deadline(settings.max_seconds)
    for epoch in range(epochs):
        if deadline.hit:
            break
        model.train()
        phases = ([("max", per_pass)] if epoch < settings.max_epochs else []) + [
            ("min", retain_steps)]
        for phase, steps in phases:
            for _ in range(steps):
                x, y = forget() if phase == "max" else retain()
                logits = model(x)
                with torch.no_grad():
                    target = teacher(x)
                kl = distill_kl(logits, target, settings.temperature)
                loss = (-kl if phase == "max" else
                        settings.ce_weight * ce(logits, y) + settings.kl_weight * kl)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                max_steps += phase == "max"
                min_steps += phase == "min"
                bar.update()
                if deadline.passed():  # the epoch ends after this step, and is kept as it is
                    break
            if deadline.hit:
                break
        if settings.rewind:
            keep()
    bar.close()
    model.eval()
    result = {"steps": max_steps + min_steps, "max_steps": max_steps, "min_steps": min_steps,
              "retain_batches_per_epoch": retain_steps, "deadline_hit": deadline.hit}
    if settings.rewind:
        unseen = _error(teacher, *reference, device)
        errors = [error for error, _ in kept]
        epoch = int(np.argmin(np.abs(np.array(errors) - unseen)))  # ties: the smaller edit
        model.load_state_dict(kept[epoch][1])
        result.update(rewound_to_epoch=epoch, unseen_error=unseen, forget_errors=errors)
    return result
