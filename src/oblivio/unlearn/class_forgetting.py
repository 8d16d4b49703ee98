"""Training-free class forgetting (ALGORITHMS.md section 1) as one job: sample, capture retain and
forget statistics, compute subspaces, project the weights with alpha chosen on a validation split
drawn from the training data (never the test split), and write the unlearned model directory.

The stages are separate functions (``capture_statistics``, ``compute_subspaces``,
``Projector``/``select_alpha``) so the pipeline can run each as its own step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from oblivio.data.reader import Split
from oblivio.errors import OblivioError
from oblivio.models.checkpoint import save_model
from oblivio.models.inference import predict_logits
from oblivio.training import resolve_device, seed_everything
from oblivio.unlearn.contrast import RATIOS, ContrastBasis, ContrastProjector, contrast_bases
from oblivio.unlearn.layers import block_root, last_blocks, layer_blocks, projectable_layers
from oblivio.unlearn.projection import Projector, direct_operators, grid_operators
from oblivio.unlearn.requests import forgotten_classes, load_matching, peak_memory
from oblivio.unlearn.resume import depth_views
from oblivio.unlearn.samples import ClassSamples, draw_class_samples
from oblivio.unlearn.statistics import Statistics, capture_statistics

ALPHA_R = (10.0, 30.0, 100.0, 300.0, 1000.0)
ALPHA_F = (1.0, 3.0, 10.0, 30.0, 100.0)


def alpha_grid() -> list[tuple[float, float]]:
    """The (alpha_r, alpha_f) pairs swept by ``--alpha auto`` (alpha_f <= alpha_r/1000 skipped)."""
    return [(r, f) for r in ALPHA_R for f in ALPHA_F if f > r / 1000]


FORGET_MARGIN = 3 ** 0.5
FINALISTS = 2


@dataclass(frozen=True)
class GridPoint:
    """Validation accuracies of one pair. Scoring stops as soon as the outcome is settled, so
    ``forget_acc`` may be a lower bound (``forget_partial``: the pair surely misses the forget
    target), ``retain_acc`` an upper bound (``retain_partial``: the pair surely keeps less than
    the finalists so far), and ``retain_acc`` is None where a missed target made it moot."""

    alpha_r: float
    alpha_f: float
    retain_acc: float | None
    forget_acc: float
    forget_partial: bool = False
    retain_partial: bool = False

    @property
    def score(self) -> float | None:
        """retain accuracy x (1 - forget accuracy), the composite of ALGORITHMS.md 1.5."""
        return None if self.retain_acc is None else self.retain_acc * (1.0 - self.forget_acc)


def _accuracy_until(model: nn.Module, split: Split, rows: np.ndarray, device: str,
                    settled: Callable[[int, int], bool] | None = None, first: int = 16,
                    largest: int = 128) -> tuple[float, int, bool]:
    """Accuracy on ``rows`` scored in chunks of doubling size (16, 32, 64, up to ``largest``),
    stopping once ``settled(correct, seen)`` says the rest cannot change the decision at hand:
    most pairs of a grid are settled by a few dozen images. Without ``settled``, one pass.
    Returns (correct / len(rows), errors seen, stopped early)."""
    labels = split.labels[torch.as_tensor(rows)]
    correct = seen = 0
    size = first if settled is not None else len(rows)
    while seen < len(rows):
        part = slice(seen, seen + size)
        logits = predict_logits(model, split, rows[part], device=device)
        correct += int((logits.argmax(1) == labels[part]).sum())
        seen = min(seen + size, len(rows))
        size = min(2 * size, max(largest, first))
        if settled is not None and seen < len(rows) and settled(correct, seen):
            return correct / len(rows), seen - correct, True
    return correct / len(rows), seen - correct, False


def _winner(grid: list[GridPoint], forget_target: float) -> GridPoint:
    forgetting = [p for p in grid if p.forget_acc <= forget_target and p.retain_acc is not None]
    if forgetting:
        return max(forgetting, key=lambda p: (round(p.retain_acc, 9), -round(p.forget_acc, 9),
                                              -grid.index(p)))
    return max(grid, key=lambda p: (round(p.score, 9), -grid.index(p)))


def select_alpha(projector: Projector, split: Split, rows: np.ndarray, forget: list[int],
                 pairs: list[tuple[float, float]], forget_target: float = 0.01,
                 forget_margin: float = FORGET_MARGIN, device: str = "cpu",
                 progress: bool = True) -> tuple[GridPoint, list[GridPoint]]:
    """Score the grid on the validation rows and leave the model at the chosen pair.

    Among pairs whose validation forget accuracy is at most ``forget_target``, the highest
    retain accuracy wins: forgetting is the requirement, then the least damage. (Maximising
    retain x (1 - forget) alone trades retain points for forget points one for one and picks
    needlessly harsh pairs.) If no pair reaches the target, the best product wins.

    Raising alpha_f only forgets more, and raising alpha_r only forgets less (it shields more
    of the retain subspace from the forget projector). So each alpha_r row is scanned by
    increasing alpha_f and stops at its first pair that reaches the target (the rest are
    dominated), and rows are taken by increasing alpha_r, each starting at the alpha_f where
    the row before first reached it (smaller ones would miss). A pair is scored on the forget
    rows first, stopping once it surely misses, and on the retain rows only if it reaches the
    target, stopping once it surely keeps less than the ``FINALISTS`` best so far.
    The finalists are then refined: the geometric midpoint between the row's first hit and
    its last miss is tried, and alpha_f is raised by ``forget_margin``, because validation rows
    come from the training split, which the original model fitted, so they forget more readily
    than unseen images (measured: class 0 at 0.8% on validation was 2.2% on the test split).
    The finalist keeping the most, with its margin, wins: the margin costs some rows far more
    than others (class 6: 7 points at alpha_r 10, under 1 at 100).
    """
    labels = split.labels[torch.as_tensor(rows)]
    is_forget = torch.isin(labels, torch.tensor(forget)).numpy()
    forget_rows, retain_rows = rows[is_forget], rows[~is_forget]
    if len(forget_rows) == 0 or len(retain_rows) == 0:
        raise OblivioError("the validation set needs rows of both forget and retain classes")
    allowed = forget_target * len(forget_rows)
    grid: list[GridPoint] = []
    errors: dict[tuple[float, float], int] = {}

    def evaluate(pair: tuple[float, float], full: bool = False,
                 max_errors: int | None = None) -> GridPoint:
        projector.apply(*pair)
        forget_acc, _, forget_partial = _accuracy_until(
            projector.model, split, forget_rows, device,
            None if full else lambda correct, seen: correct > allowed)
        retain_acc, retain_partial = None, False
        if full or forget_acc <= forget_target:
            retain_acc, errors[pair], retain_partial = _accuracy_until(
                projector.model, split, retain_rows, device,
                None if max_errors is None else lambda correct, seen: seen - correct > max_errors,
                first=64)
            if retain_partial:
                retain_acc = 1.0 - errors[pair] / len(retain_rows)  # at most this
        grid.append(GridPoint(pair[0], pair[1], retain_acc, forget_acc, forget_partial,
                              retain_partial))
        return grid[-1]

    def cutoff(points: list[GridPoint], places: int) -> int | None:
        """Retain errors of the ``places``-th best complete hit: worse pairs are out."""
        done = sorted(errors[(p.alpha_r, p.alpha_f)] for p in points if p.retain_acc is not None
                      and not p.retain_partial and p.forget_acc <= forget_target)
        return done[places - 1] if len(done) >= places else None

    rows_by_r: dict[float, list[float]] = {}
    for r, f in pairs:
        rows_by_r.setdefault(r, []).append(f)
    bar = tqdm(total=len(pairs), desc="alpha grid", disable=not progress, leave=False)
    boundary = 0.0
    for r in sorted(rows_by_r):
        ordered = sorted(rows_by_r[r])
        for i, f in enumerate(ordered):
            bar.update()
            if f < boundary:
                continue
            if evaluate((r, f), max_errors=cutoff(grid, FINALISTS)).forget_acc <= forget_target:
                boundary = f
                bar.update(len(ordered) - i - 1)
                break
        else:
            boundary = float("inf")
    bar.close()
    if all(p.retain_acc is None for p in grid):  # nothing forgets: fall back to the product
        missed = [(p.alpha_r, p.alpha_f) for p in grid]
        grid.clear()
        for pair in missed:
            evaluate(pair, full=True)
    best = _winner(grid, forget_target)
    if len(pairs) > 1 and best.forget_acc <= forget_target:
        hits = sorted((p for p in grid if p.retain_acc is not None and not p.retain_partial
                       and p.forget_acc <= forget_target),
                      key=lambda p: -p.retain_acc)[:FINALISTS]
        finals: list[GridPoint] = []
        for hit in hits:
            misses = [p.alpha_f for p in grid if p.alpha_r <= hit.alpha_r
                      and p.alpha_f < hit.alpha_f and p.forget_acc > forget_target]
            if misses:
                mid = evaluate((hit.alpha_r, round(float(np.sqrt(hit.alpha_f * max(misses))), 3)))
                hit = mid if mid.forget_acc <= forget_target else hit
            if forget_margin > 1:
                hit = evaluate((hit.alpha_r, round(hit.alpha_f * forget_margin, 3)), full=True,
                               max_errors=cutoff(finals, 1))
            finals.append(hit)
        best = _winner(finals, forget_target)
    projector.apply(best.alpha_r, best.alpha_f)
    return best, grid


@dataclass
class Plan:
    """A checked forgetting request: the model, its data and the sample rows to use."""

    model: nn.Module
    train: Split
    forget_new: list[int]
    forget_all: list[int]
    sets: ClassSamples
    retain_per_class: int


def plan_forgetting(model_dir: str, data: str, classes: str | list[int],
                    retain_per_class: int = 100, forget_samples: int = 1000,
                    val_per_class: int = 50, seed: int = 0, device: str = "cpu",
                    val_forget_samples: int = 250) -> Plan:
    """Load and check everything, then draw the sample sets. Classes the model has already
    forgotten stay forgotten and are never drawn as retain or validation samples."""
    model, dataset = load_matching(model_dir, data, device)
    config = model.config
    new = dataset.class_indices(classes)
    already = forgotten_classes(config)
    forget_all = sorted(set(new) | set(already))
    if len(forget_all) >= dataset.num_classes:
        raise OblivioError("cannot forget every class: nothing would be left to keep")
    train = dataset.split("train")
    absent = [c for c in new if not bool((train.labels == c).any())]
    if absent:
        raise OblivioError(f"class {absent[0]} has no training samples in {data}")
    seed_everything(seed)
    labels = train.labels.clone()
    labels[torch.isin(labels, torch.tensor(already or [-1]))] = -1  # drawn by no one
    sets = draw_class_samples(labels, dataset.num_classes, new, retain_per_class,
                              forget_samples, val_per_class, seed, val_forget_samples)
    return Plan(model, train, new, forget_all, sets, retain_per_class)


def alpha_pairs(alpha: str | tuple[float, float], forget_target: float,
                forget_margin: float) -> list[tuple[float, float]]:
    """The pairs to score, after checking the selection settings."""
    pairs = alpha_grid() if alpha == "auto" else [tuple(map(float, alpha))]
    if any(a <= 0 for pair in pairs for a in pair):
        raise OblivioError(f"alpha values must be positive, got {pairs[0]}")
    if forget_margin < 1:
        raise OblivioError(f"forget margin must be at least 1, got {forget_margin}")
    if not 0.0 <= forget_target <= 1.0:
        raise OblivioError(f"forget target must be in [0, 1], got {forget_target}")
    return pairs


def project_and_save(plan: Plan, operators: dict, pairs: list[tuple[float, float]], out: str,
                     forget_target: float, forget_margin: float, device: str, progress: bool,
                     provenance: dict, started: float) -> dict:
    """Choose alpha on the validation rows, write the unlearned model directory, and return
    the provenance recorded in its config (``provenance["seconds"]`` gains the projection and
    total times, counted from ``started``)."""
    t = time.perf_counter()
    projector = Projector(plan.model, operators, device)
    if len(pairs) == 1:  # nothing to choose: the validation set is not needed
        projector.apply(*pairs[0])
        alpha, validation, grid = pairs[0], None, []
    else:
        best, grid = select_alpha(projector, plan.train, plan.sets.validation, plan.forget_all,
                                  pairs, forget_target, forget_margin, device, progress)
        alpha = (best.alpha_r, best.alpha_f)
        validation = {"retain_acc": best.retain_acc, "forget_acc": best.forget_acc}
    provenance.setdefault("seconds", {})["projection"] = time.perf_counter() - t
    return _save(plan, out, started, {
        "method": "projection",
        "alpha": {"retain": alpha[0], "forget": alpha[1]},
        "alpha_mode": "auto" if len(pairs) > 1 else "fixed",
        "forget_target": forget_target,
        "forget_margin": forget_margin,
        "alpha_grid": [{**asdict(p), "score": p.score} for p in grid],
        "validation": validation,
        "device": device,
        **provenance})


def _save(plan: Plan, out: str, started: float, provenance: dict) -> dict:
    """Write the edited model with its provenance (sample counts, total time, the parent's
    fingerprint and recipe added) and return that provenance."""
    provenance["seconds"]["total"] = time.perf_counter() - started
    config = plan.model.config
    provenance = {
        "kind": "unlearned",
        "forget_classes": plan.forget_new,
        "forgotten_classes": plan.forget_all,
        "samples": {"retain": len(plan.sets.retain), "forget": len(plan.sets.forget),
                    "validation": len(plan.sets.validation),
                    "retain_per_class": plan.retain_per_class},
        **peak_memory(provenance["device"]),
        **provenance,
        "parent": {"weights_sha256": config["weights_sha256"], **provenance.get("parent", {})},
    }
    parent = config.get("provenance", {})
    for key in ("training", "forgotten_ids"):  # the recipe (for retrains), earlier deletions
        if parent.get(key):
            provenance[key] = parent[key]
    save_model(plan.model.cpu(), out, arch=config["arch"], class_names=config["class_names"],
               img_size=config["img_size"], parent_fingerprint=config["weights_sha256"],
               provenance=provenance)
    return provenance


def forget_classes(model_dir: str, data: str, classes: str | list[int], out: str,
                   alpha: str | tuple[float, float] = "auto", retain_per_class: int = 100,
                   forget_samples: int = 1000, val_per_class: int = 50, seed: int = 0,
                   device: str = "auto", batch_size: int = 250, progress: bool = True,
                   forget_target: float = 0.01, val_forget_samples: int = 250,
                   forget_margin: float = FORGET_MARGIN) -> dict:
    """Forget whole classes from a model directory; write the unlearned model to ``out``.

    Returns the provenance recorded in the new model's config. Every input is checked before
    any compute, and nothing is written unless the whole job succeeds.
    """
    device = resolve_device(device)
    start = time.perf_counter()
    pairs = alpha_pairs(alpha, forget_target, forget_margin)
    plan = plan_forgetting(model_dir, data, classes, retain_per_class, forget_samples,
                           val_per_class, seed, device, val_forget_samples)
    retain_stats, forget_stats, timings = _capture(plan, start, batch_size, device, progress)
    t = time.perf_counter()
    if len(pairs) > 1:  # a grid: forget side decomposed once, each pair one product per layer
        operators = grid_operators(retain_stats, forget_stats, device,
                                   max(f for _, f in pairs) * forget_margin)
    else:  # one pair: a Cholesky solve per layer, no decomposition at all
        operators = direct_operators(retain_stats, forget_stats, device)
    del retain_stats, forget_stats
    timings["subspaces"] = time.perf_counter() - t
    provenance = {"solver": "direct+eigen" if len(pairs) > 1 else "direct", "seed": seed,
                  "seconds": timings, "parent": {"path": model_dir}}
    return project_and_save(plan, operators, pairs, out, forget_target, forget_margin, device,
                            progress, provenance, start)


def _capture(plan: Plan, start: float, batch_size: int, device: str, progress: bool,
             layers: list[str] | None = None, split: Split | None = None
             ) -> tuple[Statistics, Statistics, dict[str, float]]:
    """Retain and forget statistics of the plan's sample sets (of every layer, or the named
    ones; from ``split``, a view of the training split, when given), with the time of each
    stage (sampling counted from ``start``)."""
    split = plan.train if split is None else split
    timings = {"load_and_sample": time.perf_counter() - start}
    t = time.perf_counter()
    retain = capture_statistics(plan.model, split, plan.sets.retain, batch_size, device,
                                progress, "capture retain", layers)
    timings["capture_retain"] = time.perf_counter() - t
    t = time.perf_counter()
    forget = capture_statistics(plan.model, split, plan.sets.forget, batch_size, device,
                                progress, "capture forget", layers)
    timings["capture_forget"] = time.perf_counter() - t
    return retain, forget, timings


@dataclass(frozen=True)
class RatioPoint:
    """Validation accuracies of one contrast threshold applied to the last ``blocks`` blocks,
    after ``rounds`` rounds (partial flag as in ``GridPoint``)."""

    tau: float
    rounds: int
    removed: int
    retain_acc: float | None
    forget_acc: float
    forget_partial: bool = False
    blocks: int | None = None

    @property
    def score(self) -> float | None:
        return None if self.retain_acc is None else self.retain_acc * (1.0 - self.forget_acc)


Capture = Callable[[list[str], int | None], tuple[Statistics, Statistics]]
NextRound = Callable[[tuple, float, int | None], ContrastProjector]
KNEE = 0.01


def later_rounds(projector: ContrastProjector, capture: Capture) -> NextRound:
    """``next_round(state, tau, depth)``: a projector over the last ``depth`` blocks of the model
    as it now is, applied at ``tau``. ``state`` names the model: the ``ContrastProjector.edit``
    keys of the rounds that made it. Capturing the edited model's statistics is what a round
    costs, so they are captured once per state and layer (``capture(layers, depth)``): a deeper
    depth whose edits so far equal a shallower one's captures only its extra layers."""
    cache: dict[tuple, dict[str, ContrastBasis]] = {}

    def next_round(state: tuple, tau: float, depth: int | None) -> ContrastProjector:
        names = projector.last_blocks(depth)
        bases = cache.setdefault((tau, state), {})
        missing = [name for name in names if name not in bases]
        if missing:
            bases.update(contrast_bases(*capture(missing, depth), tau))
        again = ContrastProjector(projector.model, {name: bases[name] for name in names},
                                  projector.device)
        again.apply(tau)
        return again

    return next_round


def apply_rounds(projector: ContrastProjector, next_round: NextRound | None, tau: float,
                 depth: int | None, rounds: int) -> int:
    """Leave the model at ``rounds`` rounds of ``tau`` on the last ``depth`` blocks; returns how
    many directions they removed."""
    projector.apply(tau, depth)
    state = (projector.edit(tau, depth),)
    removed = projector.removed(tau, depth)
    for _ in range(rounds - 1):
        later = next_round(state, tau, depth)
        state += (later.edit(tau),)
        removed += later.removed(tau)
    return removed


def select_ratio(projector: ContrastProjector, split: Split, rows: np.ndarray,
                 forget: list[int], taus: tuple[float, ...] = RATIOS,
                 forget_target: float = 0.01, device: str = "cpu", progress: bool = True,
                 next_round: NextRound | None = None, rounds: int = 1,
                 blocks: list[int] | None = None,
                 view: Callable[[int | None], Split] | None = None
                 ) -> tuple[RatioPoint, list[RatioPoint]]:
    """Score each threshold on the validation rows and leave the model at the chosen one:
    among points whose forget accuracy is at most ``forget_target``, the highest retain
    accuracy wins; if none reaches it, the best retain x (1 - forget).

    Depth: each entry of ``blocks`` (ascending; None: every layer only) edits only the layers
    of the network's last that many blocks. Edits early in a ViT push the kept classes off
    their distribution (class 6: a fifth of the T-shirts became sandals) while the last blocks
    carry what tells the forgotten class apart, so the shallowest depth that forgets usually
    keeps the most. Depths are tried from the shallowest and the search stops at the first
    depth that keeps no more than a shallower one did (on the 4-epoch ViT, no class gained
    more than one validation image from a depth after such a tie). A deeper edit whose extra
    blocks hold no direction above the threshold is the shallower edit: it is recorded with
    the shallower one's accuracies, not scored again. ``view(depth)`` (from ``depth_views``)
    runs the model from the depth's first block on; by default the whole model runs.

    Forgetting is not monotone in tau: removing directions early in the network moves the
    later layers' inputs away from the statistics they were edited with. A further round
    (``next_round``, from ``later_rounds``) removes what the forget set now uses, and each
    round of each threshold is a point of the grid. Thresholds whose first round removes
    nothing, or the same directions as a larger one, are skipped; a round is not added once
    the threshold forgets (more rounds only remove more: measured, never better); and a
    depth's sweep stops once a threshold's hits keep ``KNEE`` less than the best so far
    (smaller thresholds remove still more: on the ViT no later hit of a depth came back above
    its best after a drop of a point)."""
    labels = split.labels[torch.as_tensor(rows)]
    is_forget = torch.isin(labels, torch.tensor(forget)).numpy()
    forget_rows, retain_rows = rows[is_forget], rows[~is_forget]
    if len(forget_rows) == 0 or len(retain_rows) == 0:
        raise OblivioError("the validation set needs rows of both forget and retain classes")
    if rounds < 1 or (rounds > 1 and next_round is None):
        raise OblivioError(f"rounds must be at least 1 (and need next_round), got {rounds}")
    depths = blocks or [None]
    for depth in depths:
        projector.last_blocks(depth)  # checks the range before anything is scored
    allowed = forget_target * len(forget_rows)
    grid: list[RatioPoint] = []
    scored: dict[tuple, RatioPoint] = {}
    view = view or (lambda _: split)

    def score(state: tuple, point: RatioPoint, full: bool) -> None:
        known = scored.get((state, full))
        if known is None:
            source = view(point.blocks)
            forget_acc, _, partial = _accuracy_until(
                projector.model, source, forget_rows, device,
                None if full else lambda correct, _: correct > allowed)
            retain_acc = None
            if full or forget_acc <= forget_target:
                retain_acc = _accuracy_until(projector.model, source, retain_rows, device)[0]
            known = scored[(state, full)] = replace(point, retain_acc=retain_acc,
                                                    forget_acc=forget_acc,
                                                    forget_partial=partial)
        grid.append(replace(known, tau=point.tau, blocks=point.blocks))

    def kept(depth: int | None = None, tau: float | None = None) -> float | None:
        hits = [p.retain_acc for p in grid if p.retain_acc is not None
                and (depth is None or p.blocks == depth) and (tau is None or p.tau == tau)]
        return max(hits, default=None)

    def sweep(depth: int | None, full: bool) -> None:
        seen: set[int] = {0}  # removing nothing cannot forget
        for tau in tqdm(sorted(taus, reverse=True), desc="ratio grid", disable=not progress,
                        leave=False):
            removed = projector.removed(tau, depth)
            if removed in seen:  # thresholds are nested: the same count is the same edit
                continue
            seen.add(removed)
            best = kept()
            projector.apply(tau, depth)
            state = (projector.edit(tau, depth),)
            score(state, RatioPoint(tau, 1, removed, None, 1.0, blocks=depth), full)
            extra = []
            for r in range(2, rounds + 1):
                if grid[-1].forget_acc <= forget_target and not full:
                    break  # further rounds only remove more
                extra.append(next_round(state, tau, depth))
                state += (extra[-1].edit(tau),)
                removed += extra[-1].removed(tau)
                score(state, RatioPoint(tau, r, removed, None, 1.0, blocks=depth), full)
            for later in reversed(extra):
                later.restore()
            last = kept(depth, tau)
            if not full and last is not None and best is not None and last < best - KNEE:
                break

    best_before: float | None = None
    for depth in depths:
        sweep(depth, full=False)
        here = kept(depth)
        if best_before is not None and (here is None or here <= best_before):
            break  # deeper edits no longer keep more
        best_before = here if best_before is None else max(best_before, here or 0.0)
    if all(p.retain_acc is None for p in grid):  # nothing forgets: fall back to the product
        grid.clear()
        sweep(depths[-1], full=True)
    if not grid:
        raise _nothing_to_remove(min(taus))
    best = _winner(grid, forget_target)
    apply_rounds(projector, next_round, best.tau, best.blocks, best.rounds)
    return best, grid


def _nothing_to_remove(tau: float) -> OblivioError:
    return OblivioError(f"no input direction carries {tau:g}x more forget than retain energy: "
                        "nothing to remove")


def contrast_taus(ratio: str | float, rounds: int, forget_target: float) -> tuple[float, ...]:
    """The thresholds to score, after checking the settings."""
    taus = RATIOS if ratio == "auto" else (float(ratio),)
    if not all(math.isfinite(t) and t > 1 for t in taus):  # nan or inf would remove nothing
        raise OblivioError(f"the ratio threshold must exceed 1 and be finite, got {min(taus)}")
    if rounds < 1:
        raise OblivioError(f"rounds must be at least 1, got {rounds}")
    if not 0.0 <= forget_target <= 1.0:
        raise OblivioError(f"forget target must be in [0, 1], got {forget_target}")
    return taus


def contrast_depths(blocks: str | int, taus: tuple[float, ...], model: nn.Module
                    ) -> list[int] | None:
    """The depths to try, checked against the model's blocks: for ``"auto"`` with a ratio grid,
    every depth from the last two blocks to all of them; every layer (None) for ``"auto"`` with
    one fixed ratio; or the one depth given. The head alone is not tried: an edit of the output
    layer only is output masking, and on the ViT it did not carry to the test split (class 2:
    0.8% of the validation images kept, 3.3% of the test images)."""
    network = layer_blocks([spec.name for spec in projectable_layers(model)[0]])
    if blocks == "auto":
        return list(range(min(2, len(network)), len(network) + 1)) if len(taus) > 1 else None
    last_blocks(network, int(blocks))  # checks the range
    return [int(blocks)]


def contrast_and_save(plan: Plan, retain: Statistics, forget: Statistics,
                      taus: tuple[float, ...], rounds: int, out: str, forget_target: float,
                      device: str, progress: bool, provenance: dict, started: float,
                      batch_size: int = 250, blocks: str | int = "auto") -> dict:
    """Remove the contrast directions with the threshold, rounds and depth chosen on the
    validation rows (or the ones given), write the unlearned model directory and return its
    provenance (``provenance["seconds"]`` gains the subspaces, projection and total times)."""
    seconds = provenance.setdefault("seconds", {})
    t = time.perf_counter()
    depths = contrast_depths(blocks, taus, plan.model)
    projector = ContrastProjector.from_statistics(plan.model, retain, forget, device,
                                                  min(taus))
    seconds["subspaces"] = time.perf_counter() - t
    t = time.perf_counter()

    rows = np.concatenate([plan.sets.validation, plan.sets.retain, plan.sets.forget])
    roots = [block_root(block[0]) for block in projector.blocks]
    with depth_views(plan.model, roots, plan.train, rows, batch_size, device) as view:

        def capture(layers: list[str], depth: int | None) -> tuple[Statistics, Statistics]:
            return _capture(plan, time.perf_counter(), batch_size, device, False, layers,
                            view(depth))[:2]

        next_round = later_rounds(projector, capture)
        if len(taus) == 1:
            depth = None if depths is None else depths[0]
            if projector.removed(taus[0], depth) == 0:  # unchanged: later rounds see the same
                raise _nothing_to_remove(taus[0])
            removed = apply_rounds(projector, next_round, taus[0], depth, rounds)
            best = RatioPoint(taus[0], rounds, removed, None, 0.0, blocks=depth)
            grid, validation = [], None
        else:
            best, grid = select_ratio(projector, plan.train, plan.sets.validation,
                                      plan.forget_all, taus, forget_target, device, progress,
                                      next_round, rounds, depths, view)
            validation = {"retain_acc": best.retain_acc, "forget_acc": best.forget_acc}
    seconds["projection"] = time.perf_counter() - t
    edited = len(projector.blocks) if best.blocks is None else best.blocks
    return _save(plan, out, started, {
        "method": "contrast",
        "ratio": best.tau,
        "rounds": best.rounds,
        "blocks": edited,
        "blocks_total": len(projector.blocks),
        "edited_layers": projector.last_blocks(best.blocks),
        "ratio_mode": "auto" if len(taus) > 1 else "fixed",
        "removed_directions": best.removed,
        "forget_target": forget_target,
        "ratio_grid": [{**asdict(p), "score": p.score} for p in grid],
        "validation": validation,
        "device": device,
        **provenance})


def forget_by_contrast(model_dir: str, data: str, classes: str | list[int], out: str,
                       ratio: str | float = "auto", retain_per_class: int = 100,
                       forget_samples: int = 1000, val_per_class: int = 50, seed: int = 0,
                       device: str = "auto", batch_size: int = 250, progress: bool = True,
                       forget_target: float = 0.01, val_forget_samples: int = 250,
                       rounds: int = 2, blocks: str | int = "auto") -> dict:
    """Forget whole classes by energy contrast (``oblivio.unlearn.contrast``), the threshold,
    the number of rounds (up to ``rounds``) and how many of the last blocks to edit chosen on
    the validation split (``ratio="auto"``), or a fixed ratio applied ``rounds`` times to the
    last ``blocks`` blocks (every layer for ``"auto"``); same samples, checks and model
    directory as ``forget_classes``."""
    device = resolve_device(device)
    start = time.perf_counter()
    taus = contrast_taus(ratio, rounds, forget_target)
    plan = plan_forgetting(model_dir, data, classes, retain_per_class, forget_samples,
                           val_per_class, seed, device, val_forget_samples)
    contrast_depths(blocks, taus, plan.model)  # refused before any capture
    retain_stats, forget_stats, timings = _capture(plan, start, batch_size, device, progress)
    provenance = {"seed": seed, "seconds": timings, "parent": {"path": model_dir}}
    return contrast_and_save(plan, retain_stats, forget_stats, taus, rounds, out,
                             forget_target, device, progress, provenance, start, batch_size,
                             blocks)
