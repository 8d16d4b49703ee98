"""Run a network from one of its blocks on. An edit confined to the last blocks leaves everything
before them as it was, so the activations entering the first edited block are the same for
every threshold and round the contrast search tries at that depth. Computing them once and
running only the rest halved the ViT's later-round captures, most of the search (class 8:
2.3 s to 1.1 s each, the search 73.8 s to 41.4 s with the capture changes beside it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from oblivio.data.reader import Split
from oblivio.models.inference import predict_logits


class _Reached(Exception):
    """Raised by the caching hook: nothing after the block is needed."""


class Resumed:
    """A view of ``split`` whose batches run ``model`` from module ``root`` on: the activations
    entering ``root`` for ``rows`` are computed once, from the model as it is now (which must not
    change before ``root`` while the view is used); each batch then runs the layers before
    ``root`` on one image and a pre-hook hands ``root`` the batch's cached activations.
    ``batches`` and ``labels`` are what ``predict_logits`` and ``capture_statistics`` use."""

    def __init__(self, model: nn.Module, root: str, split: Split, rows: np.ndarray,
                 batch_size: int, device: str) -> None:
        self.split, self.labels = split, split.labels
        self.rows = np.unique(np.asarray(rows))
        module = dict(model.named_modules())[root]
        parts: list[torch.Tensor] = []

        def keep(_: nn.Module, args: tuple) -> None:
            parts.append(args[0])
            raise _Reached

        handle = module.register_forward_pre_hook(keep)
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for x, _ in split.batches(self.rows, batch_size):
                    try:
                        model(x.to(device))
                    except _Reached:
                        pass
        finally:
            handle.remove()
            model.train(was_training)
        if not parts:
            raise RuntimeError(f"the forward never reaches {root}")
        self.cache = torch.cat(parts)
        self._current: torch.Tensor | None = None
        self._handle: RemovableHandle | None = module.register_forward_pre_hook(self._feed)

    def _feed(self, _: nn.Module, args: tuple) -> tuple | None:
        if self._current is None:
            return None
        return (self.cache[self._current], *args[1:])

    def batches(self, indices: np.ndarray, batch_size: int = 512
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(one image, the labels) per batch of ``indices``; the model's output covers the
        whole batch."""
        if self._handle is None:
            raise RuntimeError("the resumed view is closed")
        rows = np.asarray(indices)
        pos = np.searchsorted(self.rows, rows)
        if len(rows) and (pos.max() >= len(self.rows) or (self.rows[pos] != rows).any()):
            raise ValueError("rows outside the cached ones")
        try:
            for start in range(0, len(rows), batch_size):
                chunk = rows[start:start + batch_size]
                self._current = torch.as_tensor(pos[start:start + batch_size])
                yield self.split.batch(chunk[:1])[0], self.labels[torch.as_tensor(chunk)]
        finally:
            self._current = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def resumed(model: nn.Module, root: str, split: Split, rows: np.ndarray, batch_size: int,
            device: str) -> Resumed | None:
    """A ``Resumed`` view, or None where the network does not run through ``root`` alone (a
    skip connection around it, a module called twice or never): checked against the full
    forward on a few rows."""
    view = None
    try:
        view = Resumed(model, root, split, rows, batch_size, device)
        probe = view.rows[:16]
        fast = predict_logits(model, view, probe, device=device)
        full = predict_logits(model, split, probe, device=device)
        if fast.shape == full.shape and torch.allclose(fast, full, rtol=1e-4, atol=1e-4):
            return view
    except RuntimeError:
        pass
    if view is not None:
        view.close()
    return None


@contextmanager
def depth_views(model: nn.Module, roots: list[str], split: Split, rows: np.ndarray,
                batch_size: int, device: str) -> Iterator[Callable[[int | None], Split]]:
    """``view(depth)``: ``split`` as seen by an edit of the last ``depth`` blocks (``roots``:
    each block's module, in order; None: every block). One view is kept at a time, built on
    first use, so the model must be unedited before the depth's first block when a depth is
    first asked for."""
    live: dict[str, Resumed | None] = {}

    def view(depth: int | None) -> Split:
        if depth is None or depth >= len(roots):
            return split
        root = roots[-depth]
        if root not in live:
            for old in live.values():
                if old is not None:
                    old.close()
            live.clear()
            live[root] = resumed(model, root, split, rows, batch_size, device)
        return live[root] or split

    try:
        yield view
    finally:
        for old in live.values():
            if old is not None:
                old.close()
