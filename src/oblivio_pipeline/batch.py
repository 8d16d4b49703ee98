"""``oblivio batch run``: one scheduled deletion batch, on this machine. Claim every pending
request, forget the classes and then the images from the champion (one pipeline run each, so
each version carries the evidence of its own request), and mark the requests honoured by the
version that became champion; the Kubeflow batch pipeline does the same with the same library
calls (``oblivio.deletion.batches``).

While a part runs, the lease is renewed every third of its length; every ledger write names the
claim's fencing token, so a run that lost the batch (its lease ran out and another run took it
over) writes nothing. A part registered by an earlier run of the same batch (one that died
before settling it) is not run again: its version is promoted if it passed, and settled. A part
that fails (gates, a refused promotion) sends back only its own requests, with the reason, and
the other part still runs; the batch then ends failed.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field
from datetime import timedelta

from oblivio.deletion.batches import (
    KINDS,
    claim_step,
    complete_step,
    holding,
    part_key,
    settle_part,
)
from oblivio.errors import OblivioError
from oblivio.home import oblivio_home
from oblivio.ledger.store import LeaseLost, Ledger
from oblivio.tracking.store import connect


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
    from oblivio.deletion.publish import finish_registration
    from oblivio.evaluation.gates import Gates
    from oblivio.tracking.registry import TAG, version_for_batch
    from oblivio.unlearn.methods import check_pipeline_params
    from oblivio_pipeline.local import run_local

    gates = Gates(**{k: params[k] for k in Gates.__dataclass_fields__ if k in params})
    check_pipeline_params(params)  # a bad choice claims nothing
    ledger = ledger or Ledger()
    connect()  # an unreachable MLflow fails here, before anything is claimed
    me = owner()
    batch, run = claim_step(ledger, name, str(oblivio_home() / "batches"), lease, me,
                            max_attempts, shadows=params.get("shadows_uri", ""))
    if batch is None:
        return BatchResult(None)
    result = BatchResult(batch.id, requests=[r.id for r in batch.requests])
    print(f"claimed {batch.id}: {len(batch.requests)} request(s), claim {batch.claims}, "
          f"lease until {batch.lease_until:%Y-%m-%d %H:%M} UTC", file=sys.stderr)
    arguments = {"classes": {"forget_classes": run["forget_classes"]},
                 "ids": {"forget_ids": run["forget_ids_uri"]}}
    for kind in (k for k in KINDS if next(iter(arguments[k].values()))):
        key = part_key(batch.id, kind)
        failure = ""
        try:
            with holding(ledger, batch.claim, lease) as lost:
                existing = version_for_batch(name, key)
                if existing is None:
                    out = run_local(name, data=data, deletion_batch=key, **arguments[kind],
                                    **params)
                    result.reports.append(out["report"])
                else:  # an earlier run of this batch registered it and died
                    finish_registration(name, str(existing.version),
                                        existing.tags.get(f"{TAG}gate", ""), gates, True)
            if lost.is_set():
                raise LeaseLost(f"batch {batch.id} was taken over while its {kind} ran")
        except LeaseLost:
            raise  # the batch is another run's now: settling or failing it is that run's job
        except OblivioError as exc:
            failure = str(exc)
        if settle_part(ledger, batch.claim, name, kind, max_attempts, failure) is None:
            result.honoured[kind] = ledger.counted_version(batch.id, kind)
    complete_step(ledger, batch.claim, name, max_attempts)
    return result
