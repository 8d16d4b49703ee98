"""Instance-wise unlearning with adversarial examples and weight importance (L2UL,
docs/algorithms.md §2): forget individual training images using only the model and those images.

The forget instances are pushed off their labels (or onto new ones) while a bank of targeted
adversarial examples, labelled with their targets, holds the decision boundaries around them in
place, and an importance-weighted anchor keeps weights that do not matter for the forget
instances near their values. Training stops at the first step after which no forget instance is
predicted as its label.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from oblivio.errors import OblivioError
from oblivio.models.batchnorm import recalibrate_batchnorm
from oblivio.models.inference import accuracy
from oblivio.training import resolve_device, seed_everything
from oblivio.unlearn.instances.adversarial import adversarial_bank
from oblivio.unlearn.instances.importance import anchor_weights, output_sensitivity
from oblivio.unlearn.requests import load_request, save_unlearned
from oblivio.unlearn.tuning import Deadline, check_max_seconds, other_classes

ABLATIONS = ("naive", "adv", "adv+imp")
VARIANTS = ("misclassify", "relabel")
BN_MODES = ("train", "eval")
MASKS = ("eval", "train", "none")
AUTHORS_VALUES = 3072  # CIFAR-10's 3 x 32 x 32, for which the authors set eps = 4


@dataclass(frozen=True)
class L2ULSettings:
    """The authors' settings, except where docs/algorithms.md §2 lists their defects.

    ``mask`` drops from the ascent term the instances already forgotten: the authors keep
    pushing them until the last one flips, and that unbounded ascent is what collapses the
    model (Fashion-MNIST resnet18, 16 images: test accuracy 10% without a mask). ``eval``
    judges "forgotten" as the stopping rule does, with running statistics; ``train`` (the
    first version) judged it from the train-mode logits of the step, so an image wrong under
    batch statistics but right under running ones got no push; ``none`` is the authors'.
    ``eps`` None scales the authors' 4.0, set for 3,072 CIFAR values, to the same size per
    pixel: 4 * sqrt(values / 3072). ``joint_pass`` runs forget and bank images through one
    forward pass (the first version); the authors use two, so each has its own batch
    statistics. ``recalibrate_bn`` re-estimates batch-norm statistics on that many retain
    batches afterwards."""

    ablation: str = "adv+imp"
    variant: str = "misclassify"
    bn: str = "train"
    adv_per_instance: int | None = None  # None: 20 below 100 classes, else 200
    eps: float | None = None
    pgd_step: float = 0.1
    pgd_iters: int = 100
    forget_batch: int = 32
    adv_batch: int = 256
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lam: float = 1.0
    max_epochs: int = 300
    max_seconds: float | None = None  # wall-clock cap on the steps; None: max_epochs alone
    mask: str = "eval"
    joint_pass: bool = False
    recalibrate_bn: int = 0
    seed: int = 0

    def check(self) -> None:
        for value, allowed, what in ((self.ablation, ABLATIONS, "ablation"),
                                     (self.variant, VARIANTS, "variant"),
                                     (self.bn, BN_MODES, "BN mode"),
                                     (self.mask, MASKS, "mask")):
            if value not in allowed:
                raise OblivioError(f"unknown {what} {value!r}; use one of {', '.join(allowed)}")
        if self.max_epochs < 1 or self.forget_batch < 1 or self.adv_batch < 1:
            raise OblivioError("max epochs and batch sizes must be at least 1")
        if (self.eps is not None and self.eps <= 0) or self.pgd_iters < 0 or self.lr <= 0:
            raise OblivioError("eps and the learning rate must be positive")
        if self.recalibrate_bn < 0:
            raise OblivioError("recalibrate-bn is a number of batches, at least 0")
        check_max_seconds(self.max_seconds)

    def per_instance(self, num_classes: int) -> int:
        if self.adv_per_instance is not None:
            return self.adv_per_instance
        return 20 if num_classes < 100 else 200

    def eps_for(self, image_shape: tuple[int, ...]) -> float:
        """The L2 radius of the adversarial bank for images of ``image_shape`` (C, H, W)."""
        if self.eps is not None:
            return self.eps
        return 4.0 * math.sqrt(math.prod(image_shape) / AUTHORS_VALUES)


def _set_bn(model: nn.Module, bn: str) -> None:
    """Train mode for the step, with batch norm in train mode (authors) or frozen (eval)."""
    model.train()
    if bn == "eval":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


@torch.no_grad()
def _still_remembered(pred: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor,
                      relabel: bool) -> torch.Tensor:
    """1 for instances not yet where the request wants them (still predicted as their label,
    or not yet as their new label), 0 for the others."""
    return (pred != targets if relabel else pred == labels).float()


@torch.no_grad()
def _predictions(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + 512]).argmax(1) for i in range(0, len(x), 512)])


def unlearn_instances(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                      settings: L2ULSettings = L2ULSettings(), progress: bool = True) -> dict:
    """Unlearn the instances (x, y) from ``model`` in place (x and model on the same device).

    Returns what happened: steps, epochs, whether the epoch cap was hit, the final forget
    accuracy (fraction still predicted as their label), new labels of the relabel variant, and
    the seconds of each phase.
    """
    settings.check()
    gen = seed_everything(settings.seed)
    device = x.device
    seconds: dict[str, float] = {}
    relabel = settings.variant == "relabel"
    targets = other_classes(y, num_classes, gen).to(device) if relabel else y
    use_adv = settings.ablation != "naive"
    use_imp = settings.ablation == "adv+imp"
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}

    t = time.perf_counter()
    bank_x = bank_t = None
    if use_adv:
        bank_x, bank_t = adversarial_bank(model, x, y, num_classes,
                                          settings.per_instance(num_classes), gen,
                                          settings.eps_for(tuple(x.shape[1:])),
                                          settings.pgd_step, settings.pgd_iters,
                                          progress=progress)
    seconds["adversarial_bank"] = time.perf_counter() - t
    t = time.perf_counter()
    anchors = anchor_weights(output_sensitivity(model, x, settings.forget_batch)) if use_imp \
        else {}
    anchors = {n: w.to(device) for n, w in anchors.items()}
    theta0 = {n: p.detach().clone() for n, p in params.items()} if use_imp else {}
    seconds["importance"] = time.perf_counter() - t

    def finished(pred: torch.Tensor) -> bool:
        return bool((pred == targets).all() if relabel else (pred != y).all())

    t = time.perf_counter()
    optimizer = torch.optim.SGD(params.values(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    ce = nn.CrossEntropyLoss(reduction="none")
    sign = 1.0 if relabel else -1.0
    steps_per_epoch = math.ceil(len(x) / settings.forget_batch)
    pred = _predictions(model, x)  # eval mode, as the stopping rule and the mask judge
    steps, epoch, done, bank_at = 0, 0, finished(pred), 0
    nb = min(settings.adv_batch, len(bank_x)) if use_adv else 0
    bar = tqdm(total=settings.max_epochs * steps_per_epoch, desc="unlearn", unit="step",
               disable=not progress, dynamic_ncols=True)
    deadline = Deadline(settings.max_seconds)
    while not done and epoch < settings.max_epochs and not deadline.hit:
        epoch += 1
        order = torch.randperm(len(x), generator=gen).to(device)
        for i in range(steps_per_epoch):
            idx = order[i * settings.forget_batch:(i + 1) * settings.forget_batch]
            nf = len(idx)
            keep = torch.ones(nf, device=device)
            if settings.mask == "eval":
                keep = _still_remembered(pred[idx], y[idx], targets[idx], relabel)
            _set_bn(model, settings.bn)
            adv_loss = torch.zeros((), device=device)
            if use_adv:  # the authors' bank loader: unshuffled batches, cycling
                pick = (torch.arange(nb, device=device) + bank_at) % len(bank_x)
                bank_at = (bank_at + nb) % len(bank_x)
            if use_adv and settings.joint_pass:
                logits = model(torch.cat([x[idx], bank_x[pick]]))
                forget_logits, adv_loss = logits[:nf], ce(logits[nf:], bank_t[pick]).sum()
            else:
                forget_logits = model(x[idx])
                if use_adv:
                    adv_loss = ce(model(bank_x[pick]), bank_t[pick]).sum()
            forget_loss = ce(forget_logits, targets[idx])
            if settings.mask == "train":
                keep = _still_remembered(forget_logits.argmax(1), y[idx], targets[idx], relabel)
            loss = (sign * (forget_loss * keep).sum() + adv_loss) / (nf + nb)
            if use_imp:
                loss = loss + settings.lam / 2 * sum(
                    (anchors[n] * (p - theta0[n]).pow(2)).sum() for n, p in params.items())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            bar.update()
            pred = _predictions(model, x)
            done = finished(pred)
            if done or deadline.passed():
                break
    bar.close()
    model.eval()
    seconds["unlearn"] = time.perf_counter() - t
    return {"steps": steps, "epochs": epoch, "cap_hit": not done,
            "deadline_hit": deadline.hit and not done,
            "forget_acc": float((pred == y).float().mean()),
            "new_labels": targets.cpu().tolist() if relabel else None,
            "seconds": seconds}


def forget_instances(model_dir: str, data: str, ids_file: str, out: str,
                     settings: L2ULSettings = L2ULSettings(), device: str = "auto",
                     progress: bool = True) -> dict:
    """Forget the training images named in ``ids_file`` with L2UL and write the unlearned model
    directory to ``out``. A model that has forgotten images before is the starting point
    (continual unlearning); the result reports accuracy on the union of all forgotten images.
    Everything is checked before any compute; nothing is written unless the whole job succeeds.
    When the epoch cap is hit the model is still written, with ``cap_hit`` in its provenance.
    """
    settings.check()
    device = resolve_device(device)
    request = load_request(model_dir, data, ids_file=ids_file, device=device)
    x, y = request.train.batch(request.forget_rows)  # a deletion request is small
    model = request.model.to(device, memory_format=torch.channels_last)
    result = unlearn_instances(model, x.to(device), y.to(device), request.dataset.num_classes,
                               settings, progress)
    t = time.perf_counter()
    result["recalibrated_images"] = recalibrate_batchnorm(
        model, request.train, request.retain_rows, settings.recalibrate_bn, settings.adv_batch,
        torch.Generator().manual_seed(settings.seed), device)
    result["seconds"]["recalibrate_bn"] = time.perf_counter() - t
    union = request.train.indices(request.forgotten_ids)
    result["forgotten_acc"] = accuracy(model, request.train, union, device)
    return save_unlearned(request, out, "l2ul", asdict(settings), result, device)
