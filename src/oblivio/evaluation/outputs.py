"""One forward pass per split, shared by every metric: logits and penultimate features; for
the training split, optionally spread over shards (one file each) and gathered back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from oblivio.data.reader import Split
from oblivio.errors import OblivioError
from oblivio.tensorfile import read_tensors, write_tensors


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


FORMAT = "oblivio-outputs/1"


def predict_shard(model_dirs: list[str], data: str, out_files: list[str], shard: int = 0,
                  shards: int = 1, device: str = "auto", progress: bool = False) -> list[dict]:
    """Outputs of each model on slice ``shard`` of ``shards`` of the training split, one
    safetensors file each: the evaluation's one pass over the training split, spread over
    nodes. The parent and the unlearned model go through one task, so the slice is read and
    decoded once and one pod (one GPU) serves both."""
    from oblivio.data import open_dataset
    from oblivio.models.checkpoint import load_model
    from oblivio.shards import shard_rows
    from oblivio.training import resolve_device

    if len(model_dirs) != len(out_files):
        raise OblivioError("one output file per model")
    device = resolve_device(device)
    models = [load_model(m, device) for m in model_dirs]  # a bad model before any work
    train = open_dataset(data).split("train")
    rows = shard_rows(np.arange(len(train)), shard, shards)
    for model, out_file in zip(models, out_files):
        outputs = collect_outputs(model, train, rows, device=device, progress=progress,
                                  desc=f"predict train {shard + 1}/{shards}")
        write_tensors(out_file, {"logits": outputs.logits, "features": outputs.features,
                                 "labels": outputs.labels}, FORMAT, {
            "weights_sha256": model.config["weights_sha256"], "shard": str(shard),
            "shards": str(shards), "start": str(int(rows[0])), "split_rows": str(len(train))})
    return [{"shard": shard, "shards": shards, "rows": len(rows)} for _ in models]


def gather_shards(part_files: list[str], weights_sha256: str, split_rows: int) -> Outputs:
    """The outputs of the whole training split from its shards, checked to be every shard,
    in order, of this model and this split."""
    parts = [read_tensors(f, FORMAT) for f in part_files]
    metas = [m for _, m in parts]
    expected = [str(i) for i in range(len(parts))]
    if [m["shard"] for m in metas] != expected or {m["shards"] for m in metas} != {
            str(len(parts))}:
        raise OblivioError(f"the training-split outputs are shards {[m['shard'] for m in metas]}"
                           f" of {sorted({m['shards'] for m in metas})}: not every shard, "
                           "in order")
    if {m["weights_sha256"] for m in metas} != {weights_sha256}:
        raise OblivioError("the training-split outputs come from another model")
    if {m["split_rows"] for m in metas} != {str(split_rows)}:
        raise OblivioError("the training-split outputs come from another dataset")
    outputs = Outputs(*(torch.cat([t[key] for t, _ in parts])
                        for key in ("logits", "features", "labels")))
    if len(outputs.labels) != split_rows:
        raise OblivioError(f"the shards hold {len(outputs.labels)} rows of {split_rows}")
    return outputs
