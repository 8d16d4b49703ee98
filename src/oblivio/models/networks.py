"""Build timm classifiers for small images, with input normalisation inside the model.

Every model takes float images in [0, 1], shape (N, C, H, W). ``pretrained=False`` always:
nothing is downloaded. Known architectures get an adaptation for small inputs; any other timm
name is built as timm defines it.

timm is imported where a network is made: it loads torchvision and torch._dynamo (about 2 s),
which the pipeline steps that only read a model directory's config or statistics never need.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from oblivio.errors import OblivioError

GRAY_MEAN, GRAY_STD = (0.5,), (0.5,)
RGB_MEAN, RGB_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageClassifier(nn.Module):
    """A timm network behind a fixed normalisation, so callers only ever pass [0, 1] pixels."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        channels = len(mean)
        self.register_buffer("mean", torch.tensor(mean).view(1, channels, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, channels, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (what the classifier head sees), for linear probes."""
        hidden = self.net.forward_features((x - self.mean) / self.std)
        return self.net.forward_head(hidden, pre_logits=True)


def _resnet(name: str) -> Callable[[int, int, int], nn.Module]:
    # timm's own stem (7x7/2 + max-pool) is kept at 28x28: a 3x3/1 stem doubles the resolution
    # of every stage, which costs 2x per training epoch and 4x in activation capture (measured),
    # more than the accuracy it buys.
    def make(num_classes: int, in_chans: int, img_size: int) -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, num_classes=num_classes,
                                 in_chans=in_chans)
    return make


def _vgg_small(num_classes: int, in_chans: int, img_size: int) -> nn.Module:
    from timm.layers import ClassifierHead
    from timm.models.vgg import VGG, ConvMlp

    # VGG-11 with BatchNorm. For small images: three max-pools (28 -> 3), and timm's ConvMlp
    # reading the whole 512 x 3 x 3 map into 512 hidden units instead of a 7x7 window into 4096
    # (which would up-sample a 1x1 map and hold 100M weights). fc1 stays a wide layer (d = 4608).
    if img_size > 64:
        cfg = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
        return VGG(cfg, num_classes=num_classes, in_chans=in_chans, norm_layer=nn.BatchNorm2d)
    cfg = [64, "M", 128, "M", 256, 256, "M", 512, 512, 512, 512]
    net = VGG(cfg, num_classes=num_classes, in_chans=in_chans, norm_layer=nn.BatchNorm2d)
    net.pre_logits = ConvMlp(512, 512, kernel_size=3, drop_rate=0.0)
    net.head = ClassifierHead(512, num_classes, pool_type="avg")
    net.head_hidden_size = 512
    net._initialize_weights()
    return net


def _vit(name: str) -> Callable[[int, int, int], nn.Module]:
    def make(num_classes: int, in_chans: int, img_size: int) -> nn.Module:
        import timm

        patch = 4 if img_size <= 64 else 16
        return timm.create_model(name, pretrained=False, num_classes=num_classes,
                                 in_chans=in_chans, img_size=img_size, patch_size=patch)
    return make


ADAPTED: dict[str, Callable[[int, int, int], nn.Module]] = {
    "resnet18": _resnet("resnet18"),
    "resnet34": _resnet("resnet34"),
    "vgg11_bn": _vgg_small,
    # timm's test_vit: 6 blocks of width 64, the same layer types as vit_tiny at a twentieth of
    # its cost; the ViT the CPU benchmarks can afford (vit_tiny: about 33 min an epoch there).
    "test_vit": _vit("test_vit"),
    "vit_tiny_patch16_224": _vit("vit_tiny_patch16_224"),
    "vit_small_patch16_224": _vit("vit_small_patch16_224"),
}


def default_normalization(in_chans: int) -> dict[str, list[float]]:
    """Mean/std used when the caller gives none: 0.5/0.5 for grayscale, ImageNet's for RGB."""
    mean, std = (GRAY_MEAN, GRAY_STD) if in_chans == 1 else (RGB_MEAN, RGB_STD)
    if in_chans not in (1, 3):
        mean, std = (0.5,) * in_chans, (0.5,) * in_chans
    return {"mean": list(mean), "std": list(std)}


def build(arch: str, num_classes: int, in_chans: int = 1, img_size: int = 28,
          normalization: dict[str, list[float]] | None = None) -> ImageClassifier:
    """A freshly initialised classifier for ``arch`` (a timm model name)."""
    if num_classes < 2:
        raise OblivioError(f"a classifier needs at least 2 classes, got {num_classes}")
    norm = normalization or default_normalization(in_chans)
    if len(norm["mean"]) != in_chans or len(norm["std"]) != in_chans:
        raise OblivioError(f"normalisation has {len(norm['mean'])} channels, model {in_chans}")
    make = ADAPTED.get(arch)
    if make is None:
        import timm

        if arch not in timm.list_models():
            raise OblivioError(
                f"unknown architecture {arch!r}; try one of {', '.join(sorted(ADAPTED))} "
                "or any timm model name"
            )
        net = timm.create_model(arch, pretrained=False, num_classes=num_classes,
                                in_chans=in_chans)
    else:
        net = make(num_classes, in_chans, img_size)
    return ImageClassifier(net, norm["mean"], norm["std"])
