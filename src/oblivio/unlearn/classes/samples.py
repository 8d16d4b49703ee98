"""Seeded, class-balanced draws of the sample sets the projection needs (docs/algorithms.md §1.1):
retain samples from the retain classes, forget samples from the forget classes, and a
validation set for choosing alpha, disjoint from both, all from the TRAINING split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from oblivio.errors import OblivioError


@dataclass(frozen=True)
class ClassSamples:
    retain: np.ndarray
    forget: np.ndarray
    validation: np.ndarray


def draw_class_samples(labels: torch.Tensor, num_classes: int, forget_classes: list[int],
                       retain_per_class: int, forget_samples: int, val_per_class: int,
                       seed: int, val_forget_samples: int | None = None) -> ClassSamples:
    """Row indices of the three sets. Each class's rows are shuffled once with the seed; retain
    (or forget) rows come first and validation rows after them, so the sets never overlap.

    Forget classes get ``val_forget_samples`` validation rows in all (default: as many as a
    retain class): a 1% forget target needs a few hundred to be resolved at all."""
    if retain_per_class < 1 or forget_samples < 1:
        raise OblivioError("need at least one retain sample per class and one forget sample")
    if val_per_class < 1 or (val_forget_samples is not None and val_forget_samples < 1):
        raise OblivioError("need at least one validation sample per class to choose alpha")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=gen)
    shuffled = labels[order]
    forget_set = set(forget_classes)
    per_forget = -(-forget_samples // len(forget_classes))
    per_forget_val = -(-(val_forget_samples or val_per_class) // len(forget_classes))
    retain, forget, val = [], [], []
    for c in range(num_classes):
        rows = order[shuffled == c]
        take = per_forget if c in forget_set else retain_per_class
        if c in forget_set and len(rows) == 0:
            raise OblivioError(f"class {c} has no training samples: nothing to forget")
        (forget if c in forget_set else retain).append(rows[:take])
        val.append(rows[take:take + (per_forget_val if c in forget_set else val_per_class)])
    forget_rows = torch.cat(forget)[:forget_samples]
    return ClassSamples(torch.cat(retain).sort().values.numpy(),
                        forget_rows.sort().values.numpy(), torch.cat(val).sort().values.numpy())
