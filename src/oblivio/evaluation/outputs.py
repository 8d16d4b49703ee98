"""One forward pass per split, shared by every metric: logits and penultimate features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from oblivio.data.reader import Split


@dataclass
class Outputs:
    """Per-sample outputs of one model on one split (CPU tensors, row order of the split)."""

    logits: torch.Tensor
    features: torch.Tensor
    labels: torch.Tensor

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits.double(), 1)

    @property
    def correct(self) -> torch.Tensor:
        return self.logits.argmax(1) == self.labels


def _features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    features = model.features(x)
    return features, model.net.get_classifier()(features)


@torch.inference_mode()
def collect_outputs(model: nn.Module, split: Split, rows: np.ndarray | None = None,
                    device: str = "cpu", batch_size: int = 500, progress: bool = True,
                    desc: str = "predict") -> Outputs:
    """Logits and penultimate features of ``rows`` of ``split`` (all when None), in one pass."""
    model.eval().to(device)
    features, logits = [], []
    total = len(split) if rows is None else len(rows)
    for x, _ in tqdm(split.batches(rows, batch_size), total=-(-total // batch_size), desc=desc,
                     unit="batch", disable=not progress, leave=False):
        f, z = _features_and_logits(model, x.to(device).contiguous(
            memory_format=torch.channels_last))
        features.append(f.float().cpu())
        logits.append(z.float().cpu())
    labels = split.labels if rows is None else split.labels[torch.as_tensor(rows)]
    return Outputs(torch.cat(logits), torch.cat(features), labels.clone())
