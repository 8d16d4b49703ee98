"""Which layers the activation-subspace projection edits, and what their input columns are.

Every ``nn.Conv2d`` and ``nn.Linear`` is covered, the classifier included. A layer's input matrix
R has one column per output position (conv: the unfolded patch, d = C_in/groups * kh * kw,
matching ``weight.flatten(1)`` of one group) or per token (linear). Grouped and depthwise
convolutions get one projector per group. ViT's q, k and v are one fused ``qkv`` Linear in timm,
so they share one projector by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from oblivio.errors import OblivioError


@dataclass(frozen=True)
class LayerSpec:
    """A projectable layer: its module path, kind, group count and per-group fan-in d."""

    name: str
    kind: str
    groups: int
    fan_in: int


def projectable_layers(model: nn.Module) -> tuple[list[LayerSpec], list[tuple[str, str]]]:
    """The layers to project, and (name, reason) for weight layers that cannot be."""
    specs, skipped = [], []
    for name, module in model.named_modules():
        if type(module) is nn.Linear:
            specs.append(LayerSpec(name, "linear", 1, module.in_features))
        elif type(module) is nn.Conv2d:
            d = module.weight[0].numel()
            specs.append(LayerSpec(name, "conv", module.groups, d))
        elif isinstance(module, (nn.Conv1d, nn.Conv3d, nn.ConvTranspose2d, nn.Conv2d, nn.Linear)):
            skipped.append((name, f"{type(module).__name__} is not supported"))
    return specs, skipped


def input_columns(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The columns of R for one batch, as rows: shape (groups, n, d)."""
    if type(module) is nn.Linear:
        return x.reshape(1, -1, module.in_features)
    assert type(module) is nn.Conv2d
    padding = module.padding
    if isinstance(padding, str) or module.padding_mode != "zeros":
        # 'same'/'valid' and non-zero padding modes: pad as the layer does, then unfold.
        if module.padding_mode != "zeros":
            x = F.pad(x, module._reversed_padding_repeated_twice, mode=module.padding_mode)
        elif padding == "same":
            x = F.pad(x, module._reversed_padding_repeated_twice)
        padding = 0
    cols = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=padding,
                    stride=module.stride)
    n, gd, positions = cols.shape
    g = module.groups
    return cols.view(n, g, gd // g, positions).permute(1, 0, 3, 2).reshape(g, n * positions,
                                                                             gd // g)


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """The weight as (groups, out_per_group, d), a view matching ``input_columns``."""
    w = module.weight
    g = getattr(module, "groups", 1)
    return w.reshape(g, w.shape[0] // g, -1)


def block_root(name: str) -> str:
    """The block a layer belongs to: its path up to the first numeric part
    (``net.blocks.4.attn.qkv`` -> ``net.blocks.4``, ``net.layer3.1.conv2`` -> ``net.layer3.1``);
    a layer with no numeric part (a stem, a patch embedding, a head) is a block of its own."""
    parts = name.split(".")
    cut = next((i for i, p in enumerate(parts) if p.isdigit()), len(parts) - 1)
    return ".".join(parts[:cut + 1])


def layer_blocks(names: list[str]) -> list[list[str]]:
    """Layer names grouped into the network's blocks (``block_root``), in order."""
    blocks: list[list[str]] = []
    last = None
    for name in names:
        key = block_root(name)
        if key != last:
            blocks.append([])
            last = key
        blocks[-1].append(name)
    return blocks


def last_blocks(blocks: list[list[str]], n: int | None) -> list[str]:
    """The layers of the last ``n`` of ``blocks`` (all of them when None)."""
    if n is not None and not 1 <= n <= len(blocks):
        raise OblivioError(f"blocks must be between 1 and {len(blocks)}, got {n}")
    return [name for block in blocks[-n if n else 0:] for name in block]
