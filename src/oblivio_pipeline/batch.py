"""``oblivio batch run``: one scheduled deletion batch, on this machine. Claim every pending
request, forget the classes and then the images from the champion (one pipeline run each, so
each version carries the evidence of its own request), and mark the requests honoured by the
version that became champion.

Exactly once: each run registers under ``<batch>.<kind>``, and registration is idempotent on
that key, so a batch taken over after its run died finds the version the dead run made instead
of making a second. A batch that fails (gates, an unreachable MLflow, a refused promotion)
returns its requests to pending with the reason, or marks them failed after their last attempt.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from oblivio.errors import OblivioError
from oblivio.ledger.store import Batch, Ledger
from oblivio.tracking.registry import CHAMPION, TAG, client
from oblivio.tracking.store import connect, oblivio_home


@dataclass
class BatchResult:
    batch: str | None
    honoured: dict[str, str] = field(default_factory=dict)  # kind -> version
    requests: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_batch(name: str = "fashion-classifier", data: str | None = None,
              lease: timedelta = timedelta(hours=6), max_attempts: int = 3,
              ledger: Ledger | None = None, **params) -> BatchResult:
    """Honour what is pending for ``name``; nothing pending: no run, no version."""
    from oblivio.data.sample_ids import ids_sha256, write_sample_ids

    ledger = ledger or Ledger()
    connect()  # an unreachable MLflow fails here, before anything is claimed
    batch = ledger.claim(name, owner(), lease)
    if batch is None:
        return BatchResult(None)
    result = BatchResult(batch.id, requests=[r.id for r in batch.requests])
    print(f"claimed {batch.id} ({_describe(batch)}) until {batch.lease_until:%Y-%m-%d %H:%M} "
          "UTC", file=sys.stderr)
    try:
        if batch.classes:
            result.honoured["classes"] = _step(ledger, batch, name, data, "classes", result,
                                               forget_classes=",".join(map(str, batch.classes)),
                                               **params)
        if batch.ids:
            ids_file = batch_dir(batch.id) / "ids.parquet"
            ids_file.parent.mkdir(parents=True, exist_ok=True)
            write_sample_ids(ids_file, batch.ids)
            ledger.record_run(batch.id, ids_sha256=ids_sha256(batch.ids))
            result.honoured["ids"] = _step(ledger, batch, name, data, "ids", result,
                                           forget_ids=str(ids_file), **params)
    except OblivioError as exc:
        back = ledger.fail(batch.id, str(exc), max_attempts)
        pending = sum(r.state == "pending" for r in back)
        raise OblivioError(f"batch {batch.id} failed: {exc} ({pending} request(s) back to "
                           f"pending, {len(back) - pending} failed for good)") from None
    return result


def _step(ledger: Ledger, batch: Batch, name: str, data: str | None, kind: str,
          result: BatchResult, **params) -> str:
    """One pipeline run for the batch's classes or images, unless a run before this one
    registered it already; the version must end up champion."""
    from oblivio.tracking.promotion import Gates
    from oblivio.tracking.publish import finish_registration, version_for_batch
    from oblivio_pipeline.local import run_local

    key = f"{batch.id}.{kind}"
    existing = version_for_batch(name, key)
    if existing is None:
        run = run_local(name, data=data, deletion_batch=key, **params)
        result.reports.append(run["report"])
        version = version_for_batch(name, key)
        if version is None:
            raise OblivioError(f"the pipeline run registered no version for {key}")
        number = str(version.version)
    else:  # the run that claimed this batch before died after registering
        number = str(existing.version)
        gates = {k: params[k] for k in Gates.__dataclass_fields__ if k in params}
        finish_registration(name, number, existing.tags.get(f"{TAG}gate", ""),
                            Gates(**gates), True)
    ledger.record_run(batch.id, version=number)
    champion = str(client().get_model_version_by_alias(name, CHAMPION).version)
    if champion != number:
        tags = client().get_model_version(name, number).tags
        gate = tags.get(f"{TAG}gate", "")
        outcome = gate if gate.startswith("failed") else tags.get(f"{TAG}promotion", "")
        raise OblivioError(f"version {number} ({kind}) did not become {CHAMPION}: {outcome}")
    ledger.honour(batch.id, kind, number)
    return number


def _describe(batch: Batch) -> str:
    parts = [f"{len(batch.requests)} request(s)"]
    if batch.classes:
        parts.append(f"classes {','.join(map(str, batch.classes))}")
    if batch.ids:
        parts.append(f"{len(batch.ids)} image(s)")
    if batch.claims > 1:
        parts.append(f"taken over, claim {batch.claims}")
    return ", ".join(parts)


def batch_dir(batch_id: str) -> Path:
    return oblivio_home() / "batches" / batch_id
