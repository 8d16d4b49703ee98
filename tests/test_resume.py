"""Running a network from one of its blocks on (oblivio.unlearn.classes.resume): what the contrast
search uses to score and capture edits confined to the last blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from oblivio.models.inference import predict_logits
from oblivio.models.networks import build
from oblivio.unlearn.classes.layers import block_root, layer_blocks, projectable_layers
from oblivio.unlearn.classes.resume import depth_views, resumed
from oblivio.unlearn.classes.statistics import capture_statistics
from tests.test_class_forgetting import random_images, split_of


def vit_case() -> tuple[nn.Module, object, list[str]]:
    torch.manual_seed(0)
    model = build("test_vit", 3, in_chans=1, img_size=28).eval()
    labels = torch.arange(40) % 3
    split = split_of(random_images(40, c=1, size=28), labels)
    blocks = layer_blocks([spec.name for spec in projectable_layers(model)[0]])
    return model, split, [block_root(block[0]) for block in blocks]


def test_a_resumed_view_gives_the_full_forward_and_the_same_statistics() -> None:
    model, split, roots = vit_case()
    rows = np.arange(40)
    assert roots[-2] == "net.blocks.5" and roots[-1] == "net.head"
    view = resumed(model, roots[-2], split, rows, 16, "cpu")
    assert view is not None
    calls = []
    model.net.blocks[0].register_forward_hook(lambda _, args, out: calls.append(len(args[0])))
    sub = rows[5:33:2]
    torch.testing.assert_close(predict_logits(model, view, sub, batch_size=8),
                               predict_logits(model, split, sub, batch_size=8),
                               rtol=1e-5, atol=1e-5)
    assert calls[:2] == [1, 1]  # the blocks before the view's ran on one image per batch
    suffix = [name for name, _ in model.named_modules() if name.startswith("net.blocks.5.")
              and isinstance(_, nn.Linear)] + ["net.head"]
    fast = capture_statistics(model, view, sub, 8, progress=False, layers=suffix)
    full = capture_statistics(model, split, sub, 8, progress=False, layers=suffix)
    for name in suffix:
        assert fast.layers[name].count == full.layers[name].count
        torch.testing.assert_close(fast.layers[name].as_gram(), full.layers[name].as_gram(),
                                   rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="outside the cached"):
        list(view.batches(np.array([3, 41])))
    view.close()
    calls.clear()
    predict_logits(model, split, sub[:4])
    assert calls == [4]  # closed: the model runs whole again


class Skip(nn.Module):
    """The input reaches the head around ``mid``: running from ``mid`` on is not the model."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.mid, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x.flatten(1))
        return self.head(self.mid(h) + h)


def test_a_network_that_skips_the_block_is_run_whole() -> None:
    torch.manual_seed(0)
    model = Skip()
    split = split_of(random_images(20, c=1, size=2))
    rows = np.arange(20)
    assert resumed(model, "mid", split, rows, 8, "cpu") is None
    model.unused = nn.Linear(4, 4)  # never called: nothing to resume from
    assert resumed(model, "unused", split, rows, 8, "cpu") is None
    with depth_views(model, ["first", "mid", "head"], split, rows, 8, "cpu") as view:
        assert view(2) is split and view(None) is split and view(3) is split
    x = split.batch(rows[:3])[0]
    expected = model.head(model.mid(model.first(x.flatten(1))) + model.first(x.flatten(1)))
    torch.testing.assert_close(model(x), expected)  # no hook left behind


def test_depth_views_keep_one_view_and_remove_it_on_exit() -> None:
    model, split, roots = vit_case()
    rows = np.arange(40)
    with depth_views(model, roots, split, rows, 16, "cpu") as view:
        two, three = view(2), view(3)
        assert two is not split and three is not split and view(3) is three
        with pytest.raises(RuntimeError, match="closed"):  # when depth 3 came
            predict_logits(model, two, rows[:4])
        torch.testing.assert_close(predict_logits(model, three, rows[:4]),
                                   predict_logits(model, split, rows[:4]), rtol=1e-5, atol=1e-5)
    assert not any(m._forward_pre_hooks for m in model.modules())
