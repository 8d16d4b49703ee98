"""Check a whole dataset once, and remember it: every image decodes and has one size, ids are
unique within and across splits, labels are in range. Methods read only the rows they sample,
so without this a corrupt image deep in the training split would let a model be written from a
broken dataset and fail only in a later evaluation.

The result is recorded in ``checks.json`` beside the splits, with the SHA-256 of each split
file; a dataset whose files still match is not decoded again.
"""

from __future__ import annotations

import hashlib
import json
import time

import pyarrow.compute as pc

from oblivio.data import storage
from oblivio.data.contract import HOLDOUT, SPLITS, split_file
from oblivio.data.reader import Dataset
from oblivio.errors import OblivioError

CHECKS_FILE = "checks.json"


def _splits(dataset: Dataset) -> tuple[str, ...]:
    return (*SPLITS, HOLDOUT) if dataset.has_holdout else SPLITS


def _fingerprints(dataset: Dataset) -> dict[str, str]:
    return {name: hashlib.sha256(storage.read_bytes(storage.join(dataset.uri, split_file(name))))
            .hexdigest() for name in _splits(dataset)}


def check_dataset(dataset: Dataset, fingerprints: dict[str, str] | None = None) -> dict:
    """Decode and check every row of every split (one error naming the first bad row), then
    record the result with the splits' SHA-256 (``fingerprints``, when the caller has them);
    returns it. A dataset that cannot be written to is checked all the same, just not
    recorded."""
    started = time.perf_counter()
    splits = {name: dataset.split(name) for name in _splits(dataset)}
    for split in splits.values():
        _ = split.images  # decodes every row: a corrupt or odd-sized image is an error here
    names = list(splits)
    for i, a in enumerate(names):  # a holdout image in train would be no holdout at all
        for b in names[i + 1:]:
            shared = pc.is_in(splits[b].sample_ids, value_set=splits[a].sample_ids)
            if pc.any(shared).as_py():
                first = splits[b].sample_ids.filter(shared)[0].as_py()
                raise OblivioError(f"dataset {dataset.uri}: sample id {first!r} is in both "
                                   f"{a} and {b}")
    result = {
        "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "splits": {name: {"rows": len(split), "image_shape": list(split.image_shape)}
                   for name, split in splits.items()},
        "sha256": fingerprints or _fingerprints(dataset),
        "seconds": round(time.perf_counter() - started, 2),
    }
    try:
        storage.write_bytes(storage.join(dataset.uri, CHECKS_FILE),
                            json.dumps(result, indent=2).encode())
    except OblivioError:
        result["recorded"] = False
    return result


def ensure_checked(dataset: Dataset) -> None:
    """Check ``dataset`` unless ``checks.json`` records a check of exactly these files."""
    try:
        recorded = json.loads(storage.read_bytes(storage.join(dataset.uri, CHECKS_FILE)))
    except (OblivioError, json.JSONDecodeError):
        recorded = {}
    fingerprints = _fingerprints(dataset)
    if recorded.get("sha256") != fingerprints:
        check_dataset(dataset, fingerprints)
