"""A retain guard: the rest of the data stays where it was, as it does under a retrain. A fixed
set of retain images is scored after the steps; when their mean loss has risen more than a
budget since the start, the steps since the last good check are undone and the caller halves
its step size. The budget is ``budget`` times a loss scale (the unseen images' mean loss), so it
holds for a model that memorised its retain images to a loss near 0 as well."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from oblivio.data.reader import Split
from oblivio.models.inference import predict_logits


def mean_loss(model: nn.Module, split: Split, rows: np.ndarray, device: str) -> float:
    logits = predict_logits(model, split, rows, device=device)
    return float(nn.functional.cross_entropy(logits, split.labels[torch.as_tensor(rows)]))


class RetainGuard:
    def __init__(self, model: nn.Module, split: Split, retain_rows: np.ndarray, budget: float,
                 scale: float, gen: torch.Generator, samples: int, device: str) -> None:
        self.split, self.device = split, device
        self.rows = np.sort(retain_rows[torch.randperm(len(retain_rows), generator=gen)[
            :samples].numpy()])
        self.start = mean_loss(model, split, self.rows, device)
        self.limit = self.start + budget * scale
        self.kept = self._snapshot(model)
        self.halved_at: list[int] = []

    @staticmethod
    def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def holds(self, model: nn.Module, step: int) -> bool:
        """After a step: keep it (True), or undo the steps since the last kept one (False)."""
        # not "<=": a step that blew the loss up to NaN is harm too
        if mean_loss(model, self.split, self.rows, self.device) <= self.limit:
            self.kept = self._snapshot(model)
            return True
        model.load_state_dict(self.kept)
        self.halved_at.append(step)
        return False

    def report(self, model: nn.Module) -> dict:
        return {"halved_at": self.halved_at, "guard_loss_start": self.start,
                "guard_loss_limit": self.limit,
                "guard_loss_end": mean_loss(model, self.split, self.rows, self.device)}
