"""Relearning (docs/algorithms.md §4.4): how few steps of fine-tuning on a handful of forgotten
images bring a forgotten class back. Accuracy and attacks read the model's outputs; an edit that
only hides a class (a silenced head, features intact) passes them and relearns the class in a
few steps, where a model retrained without it has to learn it. The reference is the retrain's
count, not zero: any network learns a class from examples eventually."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from oblivio.data.reader import Split
from oblivio.errors import OblivioError
from oblivio.models.inference import predict_logits


@dataclass(frozen=True)
class RelearnSettings:
    """The fine-tuning an attacker with a few forgotten images would run: ``images`` of the
    forgotten classes and as many retain images, batches of ``batch_size`` of each (so the head
    cannot win by predicting the forgotten class everywhere), SGD at ``lr`` with momentum 0.9,
    normalisation statistics frozen; the forgotten classes' test accuracy is read after
    0, 1, 2, 4, ... ``max_steps`` steps, on up to ``test_images`` of their test images."""

    images: int = 64
    batch_size: int = 16
    lr: float = 0.001
    max_steps: int = 64
    threshold: float = 0.5
    test_images: int = 500
    seed: int = 0

    def schedule(self) -> list[int]:
        """The steps after which accuracy is read: 0 and the powers of two up to the cap."""
        if self.max_steps < 1 or self.images < 1 or self.batch_size < 1:
            raise OblivioError("relearning needs at least one step, image and batch")
        steps = [0] + [2 ** i for i in range(self.max_steps.bit_length())]
        return sorted({s for s in steps if s <= self.max_steps} | {self.max_steps})


def _accuracy(model: nn.Module, split: Split, rows: np.ndarray, device: str) -> float:
    logits = predict_logits(model, split, rows, device=device)
    return float((logits.argmax(1) == split.labels[torch.as_tensor(rows)]).double().mean())


def relearn(model: nn.Module, train: Split, test: Split, forget_classes: list[int],
            settings: RelearnSettings = RelearnSettings(), device: str = "cpu",
            progress: bool = True) -> dict:
    """Fine-tune a copy of ``model`` (the model itself is untouched) on a few training images of
    ``forget_classes`` beside as many retain images, and read the forgotten classes' test
    accuracy along the way.

    Returns ``relearn_steps`` (the first step read at which that accuracy reaches
    ``settings.threshold``, None if not within ``max_steps``), ``relearn_forget_test_acc``
    (after ``max_steps``), ``relearn_retain_test_acc`` (the other classes' test accuracy then,
    on as many images: a run that only learnt to say the forgotten class would show here) and
    ``relearn_curve`` (step -> forgotten classes' test accuracy)."""
    schedule = settings.schedule()
    rng = np.random.default_rng(settings.seed)
    train_forget = np.isin(train.labels.numpy(), forget_classes)
    test_forget = np.isin(test.labels.numpy(), forget_classes)
    if not train_forget.any() or not test_forget.any() or train_forget.all():
        raise OblivioError("relearning needs train and test images of the forgotten classes "
                           "and of the others")

    def draw(mask: np.ndarray, n: int) -> np.ndarray:
        rows = np.flatnonzero(mask)
        return np.sort(rng.choice(rows, min(n, len(rows)), replace=False))

    forget_pool, retain_pool = draw(train_forget, settings.images), draw(~train_forget,
                                                                        settings.images)
    test_rows = draw(test_forget, settings.test_images)
    test_retain_rows = draw(~test_forget, settings.test_images)
    xf, yf = next(train.batches(forget_pool, len(forget_pool)))
    xr, yr = next(train.batches(retain_pool, len(retain_pool)))
    student = copy.deepcopy(model).to(device).eval()  # frozen normalisation statistics
    opt = torch.optim.SGD(student.parameters(), lr=settings.lr, momentum=0.9)
    generator = torch.Generator().manual_seed(settings.seed)
    curve = {0: _accuracy(student, test, test_rows, device)}
    bar = tqdm(total=settings.max_steps, desc="relearn", disable=not progress, leave=False)
    with torch.enable_grad():
        for step in range(1, settings.max_steps + 1):
            fi = torch.randint(len(yf), (settings.batch_size,), generator=generator)
            ri = torch.randint(len(yr), (settings.batch_size,), generator=generator)
            x = torch.cat([xf[fi], xr[ri]]).to(device)
            y = torch.cat([yf[fi], yr[ri]]).to(device)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(student(x), y).backward()
            opt.step()
            bar.update()
            if step in schedule:
                curve[step] = _accuracy(student, test, test_rows, device)
    bar.close()
    reached = [s for s, acc in curve.items() if acc >= settings.threshold]
    return {"relearn_steps": min(reached) if reached else None,
            "relearn_forget_test_acc": curve[settings.max_steps],
            "relearn_retain_test_acc": _accuracy(student, test, test_retain_rows, device),
            "relearn_curve": curve}
