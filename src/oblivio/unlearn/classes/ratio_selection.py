"""Choosing the energy-contrast threshold, number of rounds and depth on the validation split:
later rounds re-capture the edited model, deeper edits are tried only while they keep more."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from oblivio.data.reader import Split
from oblivio.errors import OblivioError
from oblivio.unlearn.classes.contrast import (
    RATIOS,
    ContrastBasis,
    ContrastProjector,
    contrast_bases,
)
from oblivio.unlearn.classes.layers import last_blocks, layer_blocks, projectable_layers
from oblivio.unlearn.classes.statistics import Statistics
from oblivio.unlearn.classes.validation_scoring import (
    accuracy_until,
    by_class,
    check_forget_target,
    winner,
)


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
    forget_rows, retain_rows = by_class(split, rows, forget)
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
            forget_acc, _, partial = accuracy_until(
                projector.model, source, forget_rows, device,
                None if full else lambda correct, _: correct > allowed)
            retain_acc = None
            if full or forget_acc <= forget_target:
                retain_acc = accuracy_until(projector.model, source, retain_rows, device)[0]
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
        raise nothing_to_remove(min(taus))
    best = winner(grid, forget_target)
    apply_rounds(projector, next_round, best.tau, best.blocks, best.rounds)
    return best, grid


def nothing_to_remove(tau: float) -> OblivioError:
    return OblivioError(f"no input direction carries {tau:g}x more forget than retain energy: "
                        "nothing to remove")


def contrast_taus(ratio: str | float, rounds: int, forget_target: float) -> tuple[float, ...]:
    """The thresholds to score, after checking the settings."""
    taus = RATIOS if ratio == "auto" else (float(ratio),)
    if not all(math.isfinite(t) and t > 1 for t in taus):  # nan or inf would remove nothing
        raise OblivioError(f"the ratio threshold must exceed 1 and be finite, got {min(taus)}")
    if rounds < 1:
        raise OblivioError(f"rounds must be at least 1, got {rounds}")
    check_forget_target(forget_target)
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


