"""Capture the sufficient statistic of each layer's input, G = R R^T, over a sample set.

The statistic is a sum over columns, so it streams batch by batch, shards split the sample list
and merge by addition. Each layer keeps whichever of two exact forms is smaller:
- ``gram``  (groups, d, d) float64, when the set has more columns than the layer's fan-in;
- ``factor`` (groups, n, d) float32, the columns themselves (G = F^T F), when it has fewer.
The factor form is what makes deep layers cheap: 1,000 samples of a 1x1 map against d = 4,608
decompose as a 1,000 x 1,000 problem instead of a 4,608 x 4,608 one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from oblivio.data.reader import Split
from oblivio.errors import OblivioError
from oblivio.tensorfile import read_tensors, write_tensors
from oblivio.unlearn.layers import LayerSpec, input_columns, projectable_layers

FORMAT = "oblivio-stats/1"


@dataclass
class LayerStat:
    """G = gram, or G = factor^T @ factor per group; ``count`` columns went into it."""

    count: int
    gram: torch.Tensor | None = None
    factor: torch.Tensor | None = None

    def as_gram(self) -> torch.Tensor:
        if self.gram is not None:
            return self.gram
        f = self.factor.double()
        return f.transpose(1, 2) @ f


@dataclass
class Statistics:
    """Per-layer statistics of one sample set."""

    samples: int
    layers: dict[str, LayerStat] = field(default_factory=dict)


class _Accumulator:
    def __init__(self, spec: LayerSpec, total_samples: int, device: str) -> None:
        self.spec, self.total, self.device = spec, total_samples, device
        self.stat: LayerStat | None = None
        self.filled = 0

    def add(self, cols: torch.Tensor, batch_samples: int) -> None:
        if self.stat is None:
            per_sample = cols.shape[1] // batch_samples
            n_total = per_sample * self.total
            g, d = self.spec.groups, self.spec.fan_in
            if n_total < d:
                self.stat = LayerStat(0, factor=torch.empty(g, n_total, d, device=self.device))
            else:
                self.stat = LayerStat(0, gram=torch.zeros(g, d, d, dtype=torch.float64,
                                                          device=self.device))
        n = cols.shape[1]
        if self.stat.factor is not None:
            self.stat.factor[:, self.filled:self.filled + n] = cols
            self.filled += n
        else:
            # float32 product per batch, float64 running sum: exact enough, twice as fast.
            self.stat.gram += torch.bmm(cols.transpose(1, 2), cols).double()
        self.stat.count += n


@torch.inference_mode()
def capture_statistics(model: nn.Module, split: Split, rows: np.ndarray, batch_size: int = 250,
                       device: str = "cpu", progress: bool = True,
                       desc: str = "capture", layers: list[str] | None = None) -> Statistics:
    """Run ``rows`` of ``split`` through ``model`` once and accumulate the input statistic of
    every projectable layer (or of the named ones only). Memory does not grow with the number of
    samples for Gram-form layers."""
    if len(rows) == 0:
        raise OblivioError("cannot capture statistics of an empty sample set")
    specs, _ = projectable_layers(model)
    if layers is not None:
        unknown = set(layers) - {s.name for s in specs}
        if unknown:
            raise OblivioError(f"no projectable layer named {sorted(unknown)[0]}")
        wanted = set(layers)
        specs = [s for s in specs if s.name in wanted]
    modules = dict(model.named_modules())
    accs = {s.name: _Accumulator(s, len(rows), device) for s in specs}
    current = {"n": 0}

    def hook(name: str):
        def pre_hook(module: nn.Module, args: tuple) -> None:
            accs[name].add(input_columns(module, args[0].float()), current["n"])
        return pre_hook

    handles = [modules[s.name].register_forward_pre_hook(hook(s.name)) for s in specs]
    model.eval().to(device)
    try:
        for x, y in tqdm(split.batches(rows, batch_size), total=-(-len(rows) // batch_size),
                         desc=desc, unit="batch", disable=not progress, leave=False):
            current["n"] = len(y)  # a resumed view passes one image per batch
            model(x.to(device))
    finally:
        for h in handles:
            h.remove()
    return Statistics(len(rows), {name: acc.stat for name, acc in accs.items()})


def merge_statistics(parts: list[Statistics]) -> Statistics:
    """Statistics of the union of disjoint sample sets: Gram matrices add, factors stack."""
    if not parts:
        raise OblivioError("no statistics to merge")
    names = list(parts[0].layers)
    if any(list(p.layers) != names for p in parts):
        raise OblivioError("statistics come from different models")
    merged = Statistics(sum(p.samples for p in parts))
    for name in names:
        stats = [p.layers[name] for p in parts]
        count = sum(s.count for s in stats)
        d = (stats[0].gram if stats[0].gram is not None else stats[0].factor).shape[-1]
        if all(s.factor is not None for s in stats) and count < d:
            merged.layers[name] = LayerStat(count, factor=torch.cat([s.factor for s in stats], 1))
        else:
            merged.layers[name] = LayerStat(count, gram=sum(s.as_gram() for s in stats))
    return merged


def save_statistics(stats: Statistics, uri: str | os.PathLike[str]) -> None:
    """One safetensors file; the layer order and forms travel in its metadata."""
    tensors = {}
    for name, stat in stats.layers.items():
        key = "gram" if stat.gram is not None else "factor"
        tensors[f"{name}.{key}"] = stat.gram if stat.gram is not None else stat.factor
    write_tensors(uri, tensors, FORMAT, {
        "samples": str(stats.samples),
        "layers": json.dumps([[n, s.count] for n, s in stats.layers.items()])})


def load_statistics(uri: str | os.PathLike[str]) -> Statistics:
    """Read statistics written by :func:`save_statistics` (never unpickles)."""
    tensors, meta = read_tensors(uri, FORMAT)
    stats = Statistics(int(meta["samples"]))
    for name, count in json.loads(meta["layers"]):
        stats.layers[name] = LayerStat(count, gram=tensors.get(f"{name}.gram"),
                                       factor=tensors.get(f"{name}.factor"))
    return stats
