"""Shards of a sample list. The pipeline spreads capture and evaluation over nodes, one
contiguous slice of the list per task, and reduces the parts in shard order, so N shards give
what one does (up to the order of floating-point sums)."""

from __future__ import annotations

import numpy as np

from oblivio.errors import OblivioError

MAX_SHARDS = 256  # far beyond the nodes a cluster lends one run; a typo, not a plan


def shard_plan(shards: int) -> list[int]:
    """The shard indices a run fans out over; a count out of range is one error."""
    if not 1 <= shards <= MAX_SHARDS:
        raise OblivioError(f"shards must be between 1 and {MAX_SHARDS}, got {shards}")
    return list(range(shards))


def shard_rows(rows: np.ndarray, shard: int, shards: int) -> np.ndarray:
    """Slice ``shard`` of ``shards`` of ``rows``: contiguous, sizes differing by at most one."""
    shard_plan(shards)
    if not 0 <= shard < shards:
        raise OblivioError(f"shard {shard} is not one of {shards} shards")
    if shards > len(rows):
        raise OblivioError(f"{shards} shards of {len(rows)} samples: some would be empty")
    bounds = np.linspace(0, len(rows), shards + 1).round().astype(int)
    return rows[bounds[shard]:bounds[shard + 1]]
