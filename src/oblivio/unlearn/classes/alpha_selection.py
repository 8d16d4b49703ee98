"""Choosing the projection's (alpha_r, alpha_f) on a validation split drawn from the training
data (never the test split): the grid, its pruned scan, and the margin that carries a
validation result over to unseen images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from oblivio.data.reader import Split
from oblivio.errors import OblivioError
from oblivio.unlearn.classes.projection import Projector
from oblivio.unlearn.classes.validation_scoring import (
    accuracy_until,
    by_class,
    check_forget_target,
    winner,
)

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
        """retain accuracy x (1 - forget accuracy), the composite of docs/algorithms.md §1.5."""
        return None if self.retain_acc is None else self.retain_acc * (1.0 - self.forget_acc)



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
    forget_rows, retain_rows = by_class(split, rows, forget)
    allowed = forget_target * len(forget_rows)
    grid: list[GridPoint] = []
    errors: dict[tuple[float, float], int] = {}

    def evaluate(pair: tuple[float, float], full: bool = False,
                 max_errors: int | None = None) -> GridPoint:
        projector.apply(*pair)
        forget_acc, _, forget_partial = accuracy_until(
            projector.model, split, forget_rows, device,
            None if full else lambda correct, seen: correct > allowed)
        retain_acc, retain_partial = None, False
        if full or forget_acc <= forget_target:
            retain_acc, errors[pair], retain_partial = accuracy_until(
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
    best = winner(grid, forget_target)
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
        best = winner(finals, forget_target)
    projector.apply(best.alpha_r, best.alpha_f)
    return best, grid


def alpha_pairs(alpha: str | tuple[float, float], forget_target: float,
                forget_margin: float) -> list[tuple[float, float]]:
    """The pairs to score, after checking the selection settings."""
    pairs = alpha_grid() if alpha == "auto" else [tuple(map(float, alpha))]
    if any(a <= 0 for pair in pairs for a in pair):
        raise OblivioError(f"alpha values must be positive, got {pairs[0]}")
    if forget_margin < 1:
        raise OblivioError(f"forget margin must be at least 1, got {forget_margin}")
    check_forget_target(forget_target)
    return pairs


