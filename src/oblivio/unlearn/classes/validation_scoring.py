"""Scoring a candidate edit on validation rows, stopping as soon as the decision at hand is
settled: the selection of alpha (projection) and of the threshold (contrast) both score dozens
of candidates, and most are settled by a few dozen images."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from torch import nn

from oblivio.data.reader import Split
from oblivio.errors import OblivioError
from oblivio.models.inference import predict_logits


class Scored(Protocol):
    retain_acc: float | None
    forget_acc: float

    @property
    def score(self) -> float | None: ...


def accuracy_until(model: nn.Module, split: Split, rows: np.ndarray, device: str,
                    settled: Callable[[int, int], bool] | None = None, first: int = 16,
                    largest: int = 128) -> tuple[float, int, bool]:
    """Accuracy on ``rows`` scored in chunks of doubling size (16, 32, 64, up to ``largest``),
    stopping once ``settled(correct, seen)`` says the rest cannot change the decision at hand:
    most pairs of a grid are settled by a few dozen images. Without ``settled``, one pass.
    Returns (correct / len(rows), errors seen, stopped early)."""
    labels = split.labels[torch.as_tensor(rows)]
    correct = seen = 0
    size = first if settled is not None else len(rows)
    while seen < len(rows):
        part = slice(seen, seen + size)
        logits = predict_logits(model, split, rows[part], device=device)
        correct += int((logits.argmax(1) == labels[part]).sum())
        seen = min(seen + size, len(rows))
        size = min(2 * size, max(largest, first))
        if settled is not None and seen < len(rows) and settled(correct, seen):
            return correct / len(rows), seen - correct, True
    return correct / len(rows), seen - correct, False


def by_class(split: Split, rows: np.ndarray, forget: list[int],
             need_both: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The validation ``rows`` of the forgotten classes and of the kept ones; with
    ``need_both``, refused unless there are rows of each (nothing could be scored)."""
    labels = split.labels[torch.as_tensor(rows)]
    is_forget = torch.isin(labels, torch.tensor(forget)).numpy()
    forget_rows, retain_rows = rows[is_forget], rows[~is_forget]
    if need_both and (len(forget_rows) == 0 or len(retain_rows) == 0):
        raise OblivioError("the validation set needs rows of both forget and retain classes")
    return forget_rows, retain_rows


def winner(grid: list[Scored], forget_target: float) -> Scored:
    forgetting = [p for p in grid if p.forget_acc <= forget_target and p.retain_acc is not None]
    if forgetting:
        return max(forgetting, key=lambda p: (round(p.retain_acc, 9), -round(p.forget_acc, 9),
                                              -grid.index(p)))
    return max(grid, key=lambda p: (round(p.score, 9), -grid.index(p)))




def check_forget_target(forget_target: float) -> None:
    """A validation forget accuracy to reach is a fraction."""
    if not 0.0 <= forget_target <= 1.0:
        raise OblivioError(f"forget target must be in [0, 1], got {forget_target}")
