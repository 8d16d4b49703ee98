"""Capture the sufficient statistic of each layer's input, G = R R^T, over a sample set.

The statistic is a sum over columns, so it streams batch by batch, shards split the sample list
and merge by addition. Each layer keeps whichever of two exact forms is smaller:
- ``gram``  (groups, d, d) float64, when the set has more columns than the layer's fan-in;
- ``factor`` (groups, n, d) float32, the columns themselves (G = F^T F), when it has fewer.
The factor form is what makes deep layers cheap: 1,000 samples of a 1x1 map against d = 4,608
decompose as a 1,000 x 1,000 problem instead of a 4,608 x 4,608 one.
"""

from __future__ import annotations

import functools
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
from oblivio.unlearn.classes.layers import LayerSpec, input_columns, projectable_layers

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


GOLDEN = (5 ** 0.5 - 1) / 2
MIN_COLUMNS = 4096  # below this a layer's Gram is cheap whatever its positions


@functools.cache
def _position_order(positions: int, salt: int) -> torch.Tensor:
    """One random order of a layer's positions, as evenly spaced values in [0, 1)."""
    order = torch.randperm(positions, generator=torch.Generator().manual_seed(salt))
    return order.double() / positions


def kept_positions(rows: torch.Tensor, positions: int, keep: int, salt: int) -> torch.Tensor:
    """Which ``keep`` of a layer's ``positions`` output positions each image (by its row in the
    split) contributes: a window over one random order of the positions (``salt``: the
    layer), rotated by the golden ratio per row. Every position is kept equally often over a
    sample set, and an image keeps the same positions whatever batch or shard it comes in, so
    sharded statistics still add up to the one-pass ones. Returns (len(rows), keep) indices."""
    scores = torch.remainder(_position_order(positions, salt)[None, :]
                             + rows.double()[:, None] * GOLDEN, 1.0)
    return scores.topk(keep, dim=1).indices


class _Accumulator:
    def __init__(self, spec: LayerSpec, samples: int, set_size: int, device: str,
                 column_budget: float | None, salt: int) -> None:
        self.spec, self.total, self.set_size, self.device = spec, samples, set_size, device
        self.budget, self.salt = column_budget, salt
        self.stat: LayerStat | None = None
        self.filled = 0

    def keep_per_image(self, positions: int) -> int:
        """All positions, or, for a convolution, as few as keep about ``budget x fan-in``
        columns in all (at least ``MIN_COLUMNS``). A linear layer's columns are tokens or
        samples: all of them are kept."""
        if self.budget is None or self.spec.kind != "conv":
            return positions
        wanted = max(int(self.budget * self.spec.fan_in), MIN_COLUMNS)
        return min(positions, max(1, -(-wanted // self.set_size)))

    def add(self, cols: torch.Tensor, rows: torch.Tensor) -> None:
        """Add the columns (groups, images, positions, d) of the images at ``rows``."""
        g, n, positions, d = cols.shape
        keep = self.keep_per_image(positions)
        if keep < positions:
            idx = kept_positions(rows, positions, keep, self.salt).to(cols.device)
            cols = cols.gather(2, idx[None, :, :, None].expand(g, n, keep, d))
        cols = cols.reshape(g, n * keep, d)
        if self.stat is None:
            n_total = keep * self.total
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
def capture_sets(model: nn.Module, split: Split, sets: dict[str, np.ndarray],
                 batch_size: int = 250, device: str = "cpu", progress: bool = True,
                 desc: str = "capture", layers: list[str] | None = None,
                 column_budget: float | None = None,
                 set_sizes: dict[str, int] | None = None) -> dict[str, Statistics]:
    """Run the rows of every set through ``model`` in one pass and accumulate, per set, the
    input statistic of every projectable layer (or of the named ones only). Memory does not
    grow with the number of samples for Gram-form layers.

    ``column_budget`` keeps about that many times each conv layer's fan-in columns per set, a
    few positions of each image (``kept_positions``) instead of all: early conv layers see
    dozens of positions per image, and their Grams cost positions x fan-in^2 per image. On
    resnet18 and Fashion-MNIST a budget of 8 (with 250 forget images instead of 1,000) cut
    the capture from 7.8 s to 2.9 s and kept the forgetting (docs/benchmarks.md).
    ``set_sizes`` are the whole sets' sizes when these rows are one shard of them."""
    if any(len(r) == 0 for r in sets.values()):
        raise OblivioError("cannot capture statistics of an empty sample set")
    specs, _ = projectable_layers(model)
    salts = {s.name: i for i, s in enumerate(specs)}
    if layers is not None:
        unknown = set(layers) - {s.name for s in specs}
        if unknown:
            raise OblivioError(f"no projectable layer named {sorted(unknown)[0]}")
        wanted = set(layers)
        specs = [s for s in specs if s.name in wanted]
    sizes = {name: len(r) for name, r in sets.items()} | (set_sizes or {})
    modules = dict(model.named_modules())
    accs = {name: {s.name: _Accumulator(s, len(sets[name]), sizes[name], device, column_budget,
                                        salts[s.name])
                   for s in specs} for name in sets}
    rows = np.concatenate(list(sets.values()))
    member = np.repeat(np.arange(len(sets)), [len(r) for r in sets.values()])
    current: dict[str, list] = {"parts": []}

    def hook(layer: str):
        def pre_hook(module: nn.Module, args: tuple) -> None:
            cols = input_columns(module, args[0].float())
            g, _, d = cols.shape
            cols = cols.view(g, current["n"], -1, d)
            for name, mask, at in current["parts"]:
                accs[name][layer].add(cols if mask is None else cols[:, mask.to(cols.device)], at)
        return pre_hook

    handles = [modules[s.name].register_forward_pre_hook(hook(s.name)) for s in specs]
    model.eval().to(device)
    names = list(sets)
    seen = 0
    try:
        for x, y in tqdm(split.batches(rows, batch_size), total=-(-len(rows) // batch_size),
                         desc=desc, unit="batch", disable=not progress, leave=False):
            n = len(y)  # a resumed view passes one image per batch
            which = member[seen:seen + n]
            at = torch.as_tensor(rows[seen:seen + n])
            parts = []
            for i in np.unique(which):
                mask = None if (which == i).all() else torch.as_tensor(which == i)
                parts.append((names[i], mask, at if mask is None else at[mask]))
            current.update(n=n, parts=parts)
            model(x.to(device))
            seen += n
    finally:
        for h in handles:
            h.remove()
    return {name: Statistics(len(r), {layer: acc.stat for layer, acc in accs[name].items()})
            for name, r in sets.items()}


def capture_statistics(model: nn.Module, split: Split, rows: np.ndarray, batch_size: int = 250,
                       device: str = "cpu", progress: bool = True,
                       desc: str = "capture", layers: list[str] | None = None,
                       column_budget: float | None = None,
                       total_samples: int | None = None) -> Statistics:
    """The statistics of one sample set (``capture_sets``); ``total_samples``: the whole
    set's size when ``rows`` are one shard of it."""
    sizes = None if total_samples is None else {"rows": total_samples}
    return capture_sets(model, split, {"rows": rows}, batch_size, device, progress, desc,
                        layers, column_budget, sizes)["rows"]


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
