"""Which unseen images a method tunes towards and which an evaluation compares against: never
the same ones. A method that pulls the forgotten images' losses towards a reference, judged by
an attack on that same reference, is graded on its own answer sheet.

With a ``holdout`` split (training-distribution images no model trains on) the reference is
the holdout and the evaluation has the whole test split. Without one, the test split is cut in
two fixed halves (a permutation seeded by ``SEED``, the same on every machine): the first
serves as reference, the second for evaluation, and each says which it used.
"""

from __future__ import annotations

import numpy as np

from oblivio.data.contract import HOLDOUT
from oblivio.data.reader import Dataset, Split

SEED = 20241
HALVES = ("reference", "evaluation")


def _half(size: int, which: str) -> np.ndarray:
    order = np.random.default_rng(SEED).permutation(size)
    cut = size // 2
    return np.sort(order[:cut] if which == HALVES[0] else order[cut:])


def reference_images(dataset: Dataset) -> tuple[Split, np.ndarray, str]:
    """(split, rows, description) of the unseen images a method may tune towards."""
    if dataset.has_holdout:
        split = dataset.split(HOLDOUT)
        return split, np.arange(len(split)), f"holdout split ({len(split)} images)"
    split = dataset.split("test")
    rows = _half(len(split), "reference")
    return split, rows, f"test split, reference half ({len(rows)} of {len(split)} images)"


def evaluation_rows(dataset: Dataset) -> tuple[np.ndarray, str]:
    """(rows, description) of the test images an evaluation's attacks compare forgotten
    images against: all of them beside a holdout, else the half no method tuned towards."""
    size = len(dataset.split("test"))
    if dataset.has_holdout:
        return np.arange(size), f"test split ({size} images; methods tune on the holdout)"
    rows = _half(size, "evaluation")
    return rows, f"test split, evaluation half ({len(rows)} of {size} images)"
