"""Unseen matching: forget training images by making the model treat them as it treats images it
never saw, the behaviour of a model retrained without them (docs/algorithms.md §2.4).

Misclassifying deleted images is the wrong target for typical ones: a retrain still classifies
most of them correctly, and an unusually high loss on them is itself a membership signal. The
right target is the loss an unseen image gets. The model's losses on unseen images (the
dataset's holdout split, else the reference half of its test split, never the images
``oblivio evaluate`` judges with: data/unseen.py; or a validation dataset) give that
distribution; each forget image is assigned the
unseen loss of the same rank (the most familiar image gets the lowest unseen loss), and a few
steps move every forget loss towards its target, up or down, while a retain batch in the same
step keeps the rest of the data (with the parent's label smoothing, so its calibration stays).
It stops as soon as the forget losses are as close to the unseen distribution as a random set
of as many unseen images typically is (the median, over draws from the reference, of the
Wasserstein-1 distance between sorted losses and sorted targets, relative to the mean target),
or at ``max_steps``. That bar is what keeps a small request honest: 16 typical images are
already about as familiar to the model as 16 unseen ones would be, and a model retrained
without them still classifies all of them correctly, so pushing them further would make them
stand out.

A retrain changes nothing else, so neither may the steps: a fixed guard set of retain images is
scored at every check, and steps that raised its mean loss by more than ``retain_guard`` times
the unseen images' mean loss (a budget on the scale of the losses being matched, which holds
for a model that memorised its retain images to a loss near 0 as well) are undone and the step
size halved. One learning rate then fits models trained very differently: on a ViT trained
with AdamW, a few SGD steps at 0.01 cost up to 23 points of test accuracy (and made the
forgotten images stand out to U-LiRA); the guard undoes them and halves its way down to a step
the model takes, while a ResNet that tolerates 0.01 keeps it.

Why not stop on the loss attack's AUC: with label smoothing most images, seen or not, sit at
the same loss floor, so the AUC of a model that still classifies all of its deleted images
correctly is already near 0.5 (Fashion-MNIST resnet18, 16 images: 0.49); the difference to a
retrain is in the tail, which the distance sees.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from oblivio.data import open_dataset
from oblivio.data.reader import Split
from oblivio.data.unseen import reference_images
from oblivio.errors import OblivioError
from oblivio.evaluation.attacks import familiarity_auc
from oblivio.evaluation.gates import Gates
from oblivio.evaluation.shadows import Shadows
from oblivio.evaluation.ulira import phi_of
from oblivio.models.batchnorm import recalibrate_batchnorm
from oblivio.models.checkpoint import check_fits
from oblivio.models.inference import accuracy, predict_logits
from oblivio.training import resolve_device, seed_everything
from oblivio.unlearn.guard import RetainGuard
from oblivio.unlearn.requests import load_request, save_unlearned
from oblivio.unlearn.tuning import Deadline, check_max_seconds


@dataclass(frozen=True)
class MatchSettings:
    """The defaults measured by bench/instance_forgetting.py (docs/benchmarks.md): a fixed
    learning rate and a stopping bar calibrated on the reference, so that no setting has to be
    tuned per request."""

    lr: float = 0.01
    batch_size: int = 128  # forget images per step (all of them when fewer), and retain images
    max_steps: int = 200
    reference_samples: int = 2000  # unseen images whose losses set the targets
    tolerance: float | None = None  # relative distance to stop at; None: a random set's
    check_every: int | None = None  # steps between stopping checks; None: one per 256 images
    retain_guard: float = 0.1  # largest rise of the guard images' loss, x the unseen mean loss
    guard_samples: int = 256  # retain images that guard the rest of the data
    max_halvings: int = 8  # undone steps before matching stops where it is
    recalibrate_bn: int = 0
    max_seconds: float | None = None  # wall-clock cap on the steps; None: max_steps alone
    reference: str | None = None  # dataset whose test split holds unseen images; None: own
    targets: str = "rank"  # or "neighbours" (unseen images of its typicality), "shadows"
    shadows: str | None = None  # with targets "shadows": `oblivio pool shadows`' directory
    seed: int = 0

    def check(self) -> None:
        if self.lr <= 0 or self.batch_size < 1 or self.max_steps < 1 or (
                self.check_every is not None and self.check_every < 1):
            raise OblivioError("learning rate, batch size, max steps and check-every must be "
                               "positive")
        if self.retain_guard <= 0 or self.guard_samples < 1 or self.max_halvings < 0:
            raise OblivioError("retain guard must be positive, guard samples at least 1, max "
                               "halvings at least 0")
        if self.reference_samples < 10:
            raise OblivioError("reference samples must be at least 10")
        if self.tolerance is not None and not 0 <= self.tolerance < 1:
            raise OblivioError(f"tolerance must be in [0, 1), got {self.tolerance}")
        if self.recalibrate_bn < 0:
            raise OblivioError("recalibrate-bn is a number of batches, at least 0")
        check_max_seconds(self.max_seconds)
        if self.targets not in ("rank", "neighbours", "shadows"):
            raise OblivioError(f"targets must be rank, neighbours or shadows, got "
                               f"{self.targets!r}")
        if (self.targets == "shadows") != (self.shadows is not None):
            raise OblivioError("--targets shadows and --shadows DIR go together: the shadows "
                               "give each image its target")


def _losses(model: nn.Module, split: Split, rows: np.ndarray, device: str) -> torch.Tensor:
    logits = predict_logits(model, split, rows, device=device)
    return nn.functional.cross_entropy(logits, split.labels[torch.as_tensor(rows)],
                                       reduction="none")


def _phis(model: nn.Module, split: Split, rows: np.ndarray, device: str) -> torch.Tensor:
    logits = predict_logits(model, split, rows, device=device).float()
    return phi_of(logits, split.labels[torch.as_tensor(rows)])


def rank_matched_targets(forget_loss: torch.Tensor, unseen_loss: torch.Tensor) -> torch.Tensor:
    """For each forget loss, the unseen loss at the same quantile, or the forget loss itself
    where that is higher: the forget set's losses take the unseen distribution's shape while
    keeping their order, and none is pulled down."""
    quantiles = (torch.argsort(torch.argsort(forget_loss)).double() + 0.5) / len(forget_loss)
    return torch.maximum(torch.quantile(unseen_loss.double(), quantiles).float(), forget_loss)


NEIGHBOURS, NEIGHBOUR_POOL, LIKE_SAMPLES = 10, 2000, 20
SHADOW_TOLERANCE = 0.5  # shadow targets: mean distance, in the out-shadows' phi spreads
SHADOW_TPR_CEILING = 0.01 + Gates().pool_max_tpr_excess  # and the shadow gate's own bar


@torch.no_grad()
def _features(model: nn.Module, split: Split, rows: np.ndarray, device: str) -> torch.Tensor:
    model.eval()
    out = [model.features(x.to(device, memory_format=torch.channels_last)).float()
           for x, _ in split.batches(rows, 512)]
    return nn.functional.normalize(torch.cat(out), dim=1)


def agreement(model: nn.Module, split: Split, rows: np.ndarray, anchors: torch.Tensor,
              anchor_labels: torch.Tensor, device: str) -> torch.Tensor:
    """How typical each image is to the model: the share of its ``NEIGHBOURS`` nearest retain
    images (cosine, penultimate features) that carry its label. A memorised atypical or
    mislabelled image scores low: a retrain, which never saw it, finds it hard."""
    near = (_features(model, split, rows, device) @ anchors.T).topk(NEIGHBOURS, dim=1).indices
    labels = split.labels[torch.as_tensor(rows)].to(anchor_labels.device)
    return (anchor_labels[near] == labels[:, None]).float().mean(1).cpu()


def neighbour_targets(forget_agree: torch.Tensor, unseen_agree: torch.Tensor,
                      unseen_loss: torch.Tensor) -> torch.Tensor:
    """Per forget image, the median loss of the ``LIKE_SAMPLES`` unseen images nearest it in
    typicality: what a retrain's loss on an image like it is. Rank targets would give a
    memorised image, which the model now fits best of all, the lowest unseen loss."""
    gap = (forget_agree[:, None] - unseen_agree[None, :]).abs()
    like = gap.topk(min(LIKE_SAMPLES, len(unseen_agree)), dim=1, largest=False).indices
    return unseen_loss[like].median(dim=1).values


def distance(losses: torch.Tensor, targets: torch.Tensor) -> float:
    """Wasserstein-1 distance between the losses and the targets as distributions, relative
    to the mean target."""
    gap = (torch.sort(losses.float()).values - torch.sort(targets.float().cpu()).values).abs()
    return float(gap.mean() / targets.float().mean().clamp_min(1e-12))


def null_distance(unseen_loss: torch.Tensor, k: int, gen: torch.Generator,
                  draws: int = 200) -> float:
    """The median distance to the targets of ``k`` random unseen images: how far a request of
    that size lies from the unseen distribution when its images were never seen at all. The
    draws are with replacement, as independent of the reference as a request is."""
    samples = unseen_loss[torch.randint(len(unseen_loss), (draws, k), generator=gen)]
    quantiles = (torch.arange(k).double() + 0.5) / k
    targets = torch.quantile(unseen_loss.double(), quantiles).float()
    gap = (torch.sort(samples, dim=1).values - targets).abs().mean(1)
    return float(gap.median() / targets.mean().clamp_min(1e-12))


def _sgd(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)


def match_unseen(model: nn.Module, split: Split, forget_rows: np.ndarray,
                 retain_rows: np.ndarray, unseen: Split, settings: MatchSettings, device: str,
                 label_smoothing: float = 0.0, progress: bool = True,
                 unseen_rows: np.ndarray | None = None,
                 phi_targets: tuple[torch.Tensor, float, Callable[[np.ndarray], float]] |
                 None = None) -> dict:
    """Move the forget rows' losses onto rank-matched unseen losses (model changed in place),
    or their phi onto ``phi_targets`` (one per forget row, the spread that measures how close,
    and the shadows' TPR of a phi: a retrain-like phi per image, from shadows; the steps go on
    until that TPR is within the shadow gate too, since a mean close enough can leave one
    memorised image recognisable). The reference is drawn from
    ``unseen_rows`` (all of ``unseen`` when None): after a class is forgotten, its unseen
    images have losses no kept image has, and as targets they would push typical images off
    their labels and inflate the guard's budget."""
    settings.check()
    gen = seed_everything(settings.seed)
    pool = np.arange(len(unseen)) if unseen_rows is None else unseen_rows
    picked = pool[torch.randperm(len(pool), generator=gen)[:settings.reference_samples].numpy()]
    unseen_loss = _losses(model, unseen, np.sort(picked), device)
    start_loss = _losses(model, split, forget_rows, device)
    targets = rank_matched_targets(start_loss, unseen_loss)
    if settings.targets == "neighbours":
        anchors = retain_rows[torch.randperm(len(retain_rows), generator=gen)[
            :NEIGHBOUR_POOL].numpy()]
        features = _features(model, split, anchors, device)
        labels = split.labels[torch.as_tensor(anchors)].to(device)
        unseen_agree = agreement(model, unseen, np.sort(picked), features, labels, device)
        forget_agree = agreement(model, split, forget_rows, features, labels, device)
        targets = torch.maximum(neighbour_targets(forget_agree, unseen_agree, unseen_loss),
                                start_loss)
    unseen_np = unseen_loss.numpy()
    auc_start = familiarity_auc(start_loss.numpy(), unseen_np)
    tolerance = settings.tolerance
    if phi_targets is not None:  # each image's own target, in spreads of the shadows' phi
        targets, scale, judged_tpr = phi_targets[0].float(), phi_targets[1], phi_targets[2]
        term, kind = phi_of, "phi"
        tolerance = SHADOW_TOLERANCE if tolerance is None else tolerance

        def gap() -> float:
            phis = _phis(model, split, forget_rows, device)
            tprs.append(judged_tpr(phis.numpy()))
            return float((phis - targets).abs().mean() / scale)
    else:
        term, kind = nn.CrossEntropyLoss(reduction="none"), "loss"
        if tolerance is None:
            tolerance = null_distance(unseen_loss, len(forget_rows), gen)

        def gap() -> float:
            return distance(_losses(model, split, forget_rows, device), targets)
    start_mean = float(targets.mean()), float(
        (_phis(model, split, forget_rows, device) if kind == "phi" else start_loss).mean())
    tprs: list[float] = []  # the shadows' judged TPR at each check (shadow targets)

    def settled() -> bool:
        return history[-1] <= tolerance and (not tprs or tprs[-1] <= SHADOW_TPR_CEILING)

    history = [gap()]
    on_device = targets.to(device)
    guard = RetainGuard(model, split, retain_rows, settings.retain_guard,
                        float(unseen_loss.mean()), gen, settings.guard_samples, device)
    lr = settings.lr
    optimizer = _sgd(model, lr)
    smoothed = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    nf = min(settings.batch_size, len(forget_rows))
    # a check predicts every forget image: for a large request, about one check per step's cost
    check_every = settings.check_every or -(-len(forget_rows) // 256)
    steps = 0
    bar = tqdm(total=settings.max_steps, desc="match unseen", unit="step",
               disable=not progress, dynamic_ncols=True)
    deadline = Deadline(settings.max_seconds)
    while not settled() and steps < settings.max_steps and not deadline.hit:
        f_idx = torch.randperm(len(forget_rows), generator=gen)[:nf]
        r_idx = torch.randint(len(retain_rows), (settings.batch_size,), generator=gen)
        x, y = split.batch(np.concatenate([forget_rows[f_idx.numpy()],
                                           retain_rows[r_idx.numpy()]]))
        model.train()
        logits, y = model(x.to(device, memory_format=torch.channels_last)), y.to(device)
        loss = ((term(logits[:nf], y[:nf]) - on_device[f_idx.to(device)]).abs().mean()
                + smoothed(logits[nf:], y[nf:]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        bar.update()
        # the last step before the cap or the deadline is checked too: none goes unguarded
        last = steps == settings.max_steps or deadline.passed()
        if steps % check_every == 0 or last:
            if not guard.holds(model, steps):  # undone since the last check
                if len(guard.halved_at) > settings.max_halvings:
                    break
                lr /= 2
                optimizer = _sgd(model, lr)  # and their momentum
                bar.set_postfix(distance=f"{history[-1]:.3f}", lr=f"{lr:.2g}")
                continue
            history.append(gap())
            bar.set_postfix(distance=f"{history[-1]:.3f}", lr=f"{lr:.2g}")
    bar.close()
    model.eval()
    end_loss = _losses(model, split, forget_rows, device)
    return {"steps": steps, "cap_hit": not settled(),
            "deadline_hit": deadline.hit and not settled(), "tolerance": tolerance,
            **({"shadows_tpr_start": tprs[0], "shadows_tpr_end": tprs[-1]} if tprs else {}),
            "final_lr": lr, "guard_stopped": len(guard.halved_at) > settings.max_halvings,
            **guard.report(model),
            "distance_start": history[0], "distance_end": history[-1],
            "auc_start": auc_start, "auc_end": familiarity_auc(end_loss.numpy(), unseen_np),
            "reference_samples": len(picked),
            f"target_{kind}_mean": start_mean[0], f"start_{kind}_mean": start_mean[1]}


def forget_by_matching(model_dir: str, data: str, ids_file: str, out: str,
                       settings: MatchSettings = MatchSettings(), device: str = "auto",
                       progress: bool = True) -> dict:
    """Forget the training images in ``ids_file`` so the model treats them like unseen images,
    and write the model directory to ``out``. Unseen images come from the dataset's test split,
    or from the test split of ``settings.reference`` (a validation set the model never saw)."""
    settings.check()
    device = resolve_device(device)
    request = load_request(model_dir, data, ids_file=ids_file, device=device)
    if settings.reference is not None:
        reference = open_dataset(settings.reference)
        check_fits(request.model.config, reference, f"model {model_dir}")
        unseen = reference.split("test")
        rows, used = np.arange(len(unseen)), f"{reference.uri}, test split"
    else:
        unseen, rows, used = reference_images(request.dataset)
    model = request.model.to(device, memory_format=torch.channels_last)
    t = time.perf_counter()
    recipe = request.model.config.get("provenance", {}).get("training", {}).get("recipe", {})
    live = request.live_forget_rows
    result = {"steps": 0, "cap_hit": False, "deadline_hit": False}  # all went with a class
    if len(live):
        phi_targets = None
        if settings.targets == "shadows":
            shadows = Shadows(settings.shadows, data, request.train.ids_at(live))
            phi_targets = (torch.as_tensor(shadows.mean_out), shadows.spread_out,
                           shadows.judged_tpr)
        result = match_unseen(model, request.train, live, request.retain_rows, unseen,
                              settings, device, recipe.get("label_smoothing", 0.0), progress,
                              np.intersect1d(rows, request.known_rows(unseen)), phi_targets)
    result["forgotten_with_class"] = len(request.forget_rows) - len(live)
    unlearn_seconds = time.perf_counter() - t
    t = time.perf_counter()
    result["recalibrated_images"] = recalibrate_batchnorm(
        model, request.train, request.retain_rows, settings.recalibrate_bn, settings.batch_size,
        torch.Generator().manual_seed(settings.seed), device)
    result["seconds"] = {"unlearn": unlearn_seconds,
                         "recalibrate_bn": time.perf_counter() - t}
    union = request.train.indices(request.forgotten_ids)
    result["forgotten_acc"] = accuracy(model, request.train, union, device)
    result["reference"] = used
    return save_unlearned(request, out, "match", asdict(settings), result, device)

