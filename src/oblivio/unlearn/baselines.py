"""The baselines every unlearning claim is measured against (docs/algorithms.md §3), for class and
instance requests alike: fine-tune, NegGrad, NegGrad+, random label, SSD, SCRUB and SalUn (in
their own modules), and the retrain oracle; and relabel, the method for mislabelled images,
built on the same loop.

Each changes a model in place given the training rows to forget and to keep, and reports its
steps and seconds; ``forget_with_baseline`` wraps them into the same model directory as every
other method. Budgets are in epochs over the data the method learns from, so a run states what
it cost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from oblivio.data.reader import Split
from oblivio.data.unseen import reference_images
from oblivio.errors import OblivioError
from oblivio.models.build import build
from oblivio.models.inference import accuracy, predict_logits
from oblivio.training import recipe_for, resolve_device, seed_everything, train
from oblivio.unlearn.adversarial import other_classes
from oblivio.unlearn.guard import RetainGuard, mean_loss
from oblivio.unlearn.requests import ForgetRequest, load_request, save_unlearned

BASELINES = ("finetune", "neggrad", "neggrad+", "random-label", "relabel", "scrub", "salun",
             "ssd", "retrain")
CHECK_ROWS = 512  # forget rows watched by the stopping rule
GUARD_ROWS = 256  # retain rows watched by the retain guard
MAX_HALVINGS = 8


@dataclass(frozen=True)
class BaselineSettings:
    epochs: float = 1.0  # over D_r (finetune) or D_f (neggrad, neggrad+, random-label, relabel)
    lr: float = 0.01
    batch_size: int = 128
    forget_target: float | None = None  # None: 0 for instances, 0.01 for classes
    ssd_alpha: float = 10.0
    ssd_lambda: float = 1.0
    fisher_samples: int | None = None  # None: SSD's Fisher over all of D
    # neggrad, neggrad+, relabel: None runs the method as published; a budget undoes steps that
    # raise the loss of 256 retain images by more than this x the test split's mean loss, and
    # halves the step (oblivio.unlearn.guard), at most 8 times
    retain_guard: float | None = None
    seed: int = 0

    def check(self) -> None:
        if self.epochs <= 0 or self.lr <= 0 or self.batch_size < 1:
            raise OblivioError("epochs, learning rate and batch size must be positive")
        if self.forget_target is not None and not 0 <= self.forget_target <= 1:
            raise OblivioError(f"forget target must be in [0, 1], got {self.forget_target}")
        if self.retain_guard is not None and self.retain_guard <= 0:
            raise OblivioError("retain guard must be positive")
        if self.ssd_alpha <= 0 or self.ssd_lambda <= 0:
            raise OblivioError("SSD's alpha and lambda must be positive")
        if self.fisher_samples is not None and self.fisher_samples < 1:
            raise OblivioError(f"--fisher-samples must be at least 1 (leave it out for all), "
                               f"got {self.fisher_samples}")


@dataclass(frozen=True)
class RelabelSettings(BaselineSettings):
    """relabel's defaults: a cap of 100 epochs over the request (it stops once no image keeps
    its label, in about 10 steps on the bench) and the retain guard on."""
    epochs: float = 100.0
    retain_guard: float | None = 0.1


class BatchDraw:
    """Random batches of rows, reshuffled each pass, on the model's device; ``labels`` (one per
    row of the split) replaces the split's labels."""

    def __init__(self, split: Split, rows: np.ndarray, batch_size: int, gen: torch.Generator,
                 device: str, labels: torch.Tensor | None = None) -> None:
        self.split, self.rows, self.size = split, rows, batch_size
        self.gen, self.device, self.labels = gen, device, labels
        self.order: np.ndarray = np.empty(0, dtype=np.int64)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.order) < min(self.size, len(self.rows)):
            perm = torch.randperm(len(self.rows), generator=self.gen).numpy()
            self.order = np.concatenate([self.order, self.rows[perm]])
        take, self.order = self.order[:self.size], self.order[self.size:]
        x, y = self.split.batch(take)
        if self.labels is not None:
            y = self.labels[torch.as_tensor(take)]
        return x.to(self.device, memory_format=torch.channels_last), y.to(self.device)


def _optimise(model: nn.Module, settings: BaselineSettings, steps: int,
              loss_of: Callable[[], torch.Tensor], stop: Callable[[], bool] | None,
              desc: str, progress: bool, guard: RetainGuard | None = None,
              masks: dict[str, torch.Tensor] | None = None) -> dict:
    """SGD (momentum 0.9, cosine decay over the budget) for up to ``steps`` steps, stopping as
    soon as ``stop()`` holds after a step; with a ``guard``, a step it undoes halves the step
    size (and clears the momentum), and the 9th undone step ends the run; with ``masks`` (per
    parameter name) only the masked gradients are kept."""
    params = dict(model.named_parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9,
                                weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
    done = stop() if stop else False
    taken = 0
    for _ in tqdm(range(steps), desc=desc, unit="step", disable=not progress or done,
                  dynamic_ncols=True):
        if done:
            break
        model.train()
        loss = loss_of()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for name, mask in (masks or {}).items():
            if params[name].grad is not None:
                params[name].grad.mul_(mask)
        optimizer.step()
        schedule.step()
        taken += 1
        if guard is not None and not guard.holds(model, taken):
            if len(guard.halved_at) > MAX_HALVINGS:
                break
            schedule.base_lrs = [lr / 2 for lr in schedule.base_lrs]
            for group in optimizer.param_groups:
                group["lr"] /= 2
            optimizer.state.clear()
        done = stop() if stop else False
    model.eval()
    result = {"steps": taken, "budget_steps": steps, "stopped_early": bool(stop and done),
              "cap_hit": bool(stop and not done)}
    if guard is not None:
        result |= guard.report(model) | {"guard_stopped": len(guard.halved_at) > MAX_HALVINGS}
    return result


def _steps(rows: np.ndarray, settings: BaselineSettings) -> int:
    """Steps for ``settings.epochs`` passes over ``rows``: a request smaller than a batch is
    one batch, so one pass is one step."""
    return max(1, math.ceil(settings.epochs * len(rows) / min(settings.batch_size, len(rows))))


def _forget_stop(model: nn.Module, split: Split, forget_rows: np.ndarray, target: float,
                 device: str, gen: torch.Generator) -> Callable[[], bool]:
    """Holds once accuracy on (up to CHECK_ROWS of) the forget rows is at most ``target``."""
    watched = forget_rows[torch.randperm(len(forget_rows), generator=gen)[:CHECK_ROWS].numpy()]
    return lambda: accuracy(model, split, watched, device=device) <= target


def _forget_and_retain(split: Split, forget_rows: np.ndarray, retain_rows: np.ndarray,
                       settings: BaselineSettings, device: str
                       ) -> tuple[torch.Generator, BatchDraw, BatchDraw]:
    gen = seed_everything(settings.seed)
    return (gen, BatchDraw(split, forget_rows, settings.batch_size, gen, device),
            BatchDraw(split, retain_rows, settings.batch_size, gen, device))


def finetune(model: nn.Module, split: Split, retain_rows: np.ndarray, settings: BaselineSettings,
             device: str, progress: bool = True) -> dict:
    """Cross-entropy on D_r only: forgetting by catastrophic interference."""
    gen = seed_everything(settings.seed)
    draw = BatchDraw(split, retain_rows, settings.batch_size, gen, device)
    ce = nn.CrossEntropyLoss()

    def loss() -> torch.Tensor:
        x, y = draw()
        return ce(model(x), y)
    return _optimise(model, settings, _steps(retain_rows, settings), loss, None, "finetune",
                     progress)


def neggrad(model: nn.Module, split: Split, forget_rows: np.ndarray, retain_rows: np.ndarray,
            settings: BaselineSettings, target: float, device: str, plus: bool = False,
            progress: bool = True, loss_scale: float = 1.0) -> dict:
    """Gradient ascent on D_f until its accuracy is at most ``target``; NegGrad+ (``plus``)
    adds descent on a D_r batch in the same step. With ``settings.retain_guard``, steps that
    harm the retain images are undone (budget x ``loss_scale``, the unseen mean loss)."""
    gen, forget, retain = _forget_and_retain(split, forget_rows, retain_rows, settings, device)
    ce = nn.CrossEntropyLoss()

    def loss() -> torch.Tensor:
        x, y = forget()
        value = -ce(model(x), y)
        if plus:
            xr, yr = retain()
            value = value + ce(model(xr), yr)
        return value
    stop = _forget_stop(model, split, forget_rows, target, device, gen)
    guard = None if settings.retain_guard is None else RetainGuard(
        model, split, retain_rows, settings.retain_guard, loss_scale, gen, GUARD_ROWS, device)
    return _optimise(model, settings, _steps(forget_rows, settings), loss, stop,
                     "neggrad+" if plus else "neggrad", progress, guard)


def random_label(model: nn.Module, split: Split, forget_rows: np.ndarray,
                 retain_rows: np.ndarray, num_classes: int, settings: BaselineSettings,
                 target: float, device: str, progress: bool = True) -> dict:
    """Cross-entropy towards random wrong labels on D_f, plus a D_r batch in the same step."""
    gen, forget, retain = _forget_and_retain(split, forget_rows, retain_rows, settings, device)

    def wrong(y: torch.Tensor) -> torch.Tensor:
        return other_classes(y, num_classes, gen).to(device)
    return descend_to(model, split, forget_rows, forget, retain, wrong, settings, target,
                       device, gen, "random-label", progress)


def runner_up(model: nn.Module, split: Split, rows: np.ndarray, device: str) -> torch.Tensor:
    """Each image's most likely class other than its label. For an image the model memorised
    under a wrong label this is usually the class it shows (56 of the bench's 64), which is
    what a model retrained without it predicts."""
    logits = predict_logits(model, split, rows, device=device).clone()  # out of inference mode
    logits[torch.arange(len(rows)), split.labels[torch.as_tensor(rows)]] = -torch.inf
    return logits.argmax(1)


def relabel(model: nn.Module, split: Split, forget_rows: np.ndarray, retain_rows: np.ndarray,
            settings: BaselineSettings, target: float, device: str, progress: bool = True,
            loss_scale: float = 1.0) -> dict:
    """Descent towards each forget image's runner-up class (fixed at the start), plus a D_r
    batch in the same step, until its accuracy on the given labels is at most ``target``.
    Unlike NegGrad's ascent the loss is bounded, so it stops where a retrain's prediction is
    rather than pushing the images' loss without end; the retain guard as for NegGrad+."""
    gen = seed_everything(settings.seed)
    labels = split.labels.clone()
    labels[torch.as_tensor(forget_rows)] = runner_up(model, split, forget_rows, device).cpu()
    forget = BatchDraw(split, forget_rows, settings.batch_size, gen, device, labels)
    retain = BatchDraw(split, retain_rows, settings.batch_size, gen, device)
    guard = None if settings.retain_guard is None else RetainGuard(
        model, split, retain_rows, settings.retain_guard, loss_scale, gen, GUARD_ROWS, device)
    return descend_to(model, split, forget_rows, forget, retain, None, settings, target, device,
                       gen, "relabel", progress, guard)


def descend_to(model: nn.Module, split: Split, forget_rows: np.ndarray, forget: BatchDraw,
               retain: BatchDraw, relabelled: Callable[[torch.Tensor], torch.Tensor] | None,
               settings: BaselineSettings, target: float, device: str, gen: torch.Generator,
               desc: str, progress: bool, guard: RetainGuard | None = None,
               masks: dict[str, torch.Tensor] | None = None) -> dict:
    """Cross-entropy on a D_f batch (its labels through ``relabelled``) and a D_r batch in one
    pass, until the forget accuracy on the given labels is at most ``target``."""
    ce = nn.CrossEntropyLoss()

    def loss() -> torch.Tensor:
        x, y = forget()
        xr, yr = retain()
        y = y if relabelled is None else relabelled(y)
        return ce(model(torch.cat([x, xr])), torch.cat([y, yr]))
    stop = _forget_stop(model, split, forget_rows, target, device, gen)
    return _optimise(model, settings, _steps(forget_rows, settings), loss, stop, desc, progress,
                     guard, masks)


def diagonal_fisher(model: nn.Module, split: Split, rows: np.ndarray, batch_size: int,
                    device: str, desc: str, progress: bool = True) -> dict[str, torch.Tensor]:
    """Mean over batches of the squared CE gradient, per parameter (float64), in eval mode."""
    model.eval()
    params = dict(model.named_parameters())
    fisher = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
    ce = nn.CrossEntropyLoss()
    batches = 0
    for x, y in tqdm(split.batches(rows, batch_size), total=math.ceil(len(rows) / batch_size),
                     desc=desc, unit="batch", disable=not progress, dynamic_ncols=True):
        x = x.to(device, memory_format=torch.channels_last)
        grads = torch.autograd.grad(ce(model(x), y.to(device)), list(params.values()),
                                    allow_unused=True)
        for name, g in zip(params, grads):
            if g is not None:
                fisher[name] += g.double().pow(2)
        batches += 1
    return {n: f / batches for n, f in fisher.items()}


@torch.no_grad()
def dampen(model: nn.Module, fisher_forget: dict[str, torch.Tensor],
           fisher_all: dict[str, torch.Tensor], alpha: float, lam: float) -> int:
    """SSD: where F_f > alpha F_D, scale the parameter by min(1, lam F_D / F_f). Returns the
    number of parameters dampened."""
    changed = 0
    for name, p in model.named_parameters():
        ff, fd = fisher_forget[name], fisher_all[name]
        selected = ff > alpha * fd
        factor = torch.where(selected, (lam * fd / ff.clamp_min(1e-300)).clamp(max=1.0),
                             torch.ones_like(ff))
        p.mul_(factor.to(p.dtype))
        changed += int(selected.sum())
    return changed


def ssd(model: nn.Module, split: Split, forget_rows: np.ndarray, all_rows: np.ndarray,
        settings: BaselineSettings, device: str, progress: bool = True) -> dict:
    """Selective synaptic dampening: training-free, from two diagonal Fisher estimates."""
    gen = seed_everything(settings.seed)
    rows = all_rows
    if settings.fisher_samples and settings.fisher_samples < len(all_rows):
        rows = np.sort(all_rows[torch.randperm(len(all_rows), generator=gen)
                                [:settings.fisher_samples].numpy()])
    fisher_all = diagonal_fisher(model, split, rows, settings.batch_size, device, "fisher D",
                                 progress)
    fisher_forget = diagonal_fisher(model, split, forget_rows, settings.batch_size, device,
                                    "fisher D_f", progress)
    dampened = dampen(model, fisher_forget, fisher_all, settings.ssd_alpha, settings.ssd_lambda)
    return {"dampened_parameters": dampened, "fisher_rows": len(rows)}


def retrain(request: ForgetRequest, device: str, progress: bool = True) -> tuple[nn.Module, dict]:
    """The oracle: a fresh model trained on D_r with the original model's recipe."""
    config = request.model.config
    training = config.get("provenance", {}).get("training") or {}
    recipe = recipe_for(config["arch"], **training.get("recipe", {}))
    seed_everything(recipe.seed)
    model = build(config["arch"], config["num_classes"], config["in_chans"], config["img_size"],
                  config["normalization"])
    result = train(model, request.train, request.retain_rows, recipe, None, device, progress)
    return model, {"recipe": asdict(recipe), "recipe_from": "parent" if training else "default",
                   "train_rows": result.train_rows}


def forget_with_baseline(model_dir: str, data: str, out: str, method: str,
                         classes: str | list[int] | None = None, ids_file: str | None = None,
                         settings: BaselineSettings = BaselineSettings(), device: str = "auto",
                         progress: bool = True) -> dict:
    """Run one baseline on a class or instance request and write the model directory."""
    if method not in BASELINES:
        raise OblivioError(f"unknown baseline {method!r}; use one of {', '.join(BASELINES)}")
    settings.check()
    device = resolve_device(device)
    request = load_request(model_dir, data, classes, ids_file, device)
    target = settings.forget_target
    if target is None:
        target = 0.0 if request.mode == "instance" else 0.01
    model = request.model.to(device, memory_format=torch.channels_last)
    split, f_rows, r_rows = request.train, request.forget_rows, request.retain_rows
    t = time.perf_counter()
    if method == "finetune":
        result = finetune(model, split, r_rows, settings, device, progress)
    elif method in ("neggrad", "neggrad+", "relabel"):
        if method == "relabel" and request.mode != "instance":
            raise OblivioError("relabel forgets training images: give --forget-ids")
        scale = 1.0
        if settings.retain_guard is not None:  # the unseen images' loss scale
            test = request.dataset.split("test")
            rows = np.sort(np.random.default_rng(settings.seed).permutation(len(test))[:2000])
            scale = mean_loss(model, test, rows, device)
        if method == "relabel":
            result = relabel(model, split, f_rows, r_rows, settings, target, device, progress,
                             scale)
        else:
            result = neggrad(model, split, f_rows, r_rows, settings, target, device,
                             method == "neggrad+", progress, scale)
    elif method == "random-label":
        result = random_label(model, split, f_rows, r_rows, request.dataset.num_classes,
                              settings, target, device, progress)
    elif method == "scrub":
        from oblivio.unlearn.scrub import scrub  # it builds on this module's loop
        unseen = reference_images(request.dataset)[:2] if settings.rewind else None
        result = scrub(model, split, f_rows, r_rows, settings, device, progress, unseen)
    elif method == "salun":
        from oblivio.unlearn.salun import salun
        result = salun(model, split, f_rows, r_rows, request.dataset.num_classes, settings,
                       target, device, progress)
    elif method == "ssd":
        result = ssd(model, split, f_rows, np.arange(len(split)), settings, device, progress)
    else:
        fresh, result = retrain(request, device, progress)
        fresh.config = request.model.config
        request.model = fresh
    result["seconds"] = {"unlearn": time.perf_counter() - t}
    result["forget_target"] = target
    if request.mode == "instance":  # every image forgotten so far, this request's included
        union = split.indices(request.forgotten_ids)
        result["forgotten_acc"] = accuracy(model, split, union, device)
    return save_unlearned(request, out, method, asdict(settings), result, device)
