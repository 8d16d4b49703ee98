"""A deletion batch's steps, shared by ``oblivio batch run`` and the Kubeflow batch pipeline:
claim what is pending (writing the images' ids where the pipeline's steps read them, and
honouring at once what the champion already meets), and settle each part once its run is over:
honoured when the version counted for it is the champion, otherwise that part's requests go
back with the reason, and the other part carries on.

Each part registers under ``<batch>.<kind>`` (classes, ids); registration is idempotent on that
key, so a batch taken over after its run died finds the version the dead run made, and the
ledger counts one version per part, under the claim's fencing token.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from oblivio.data.sample_ids import ids_sha256, write_sample_ids
from oblivio.deletion.promotion import restore_honouring_champion
from oblivio.deletion.purge import SHADOWS, erase_batch_files
from oblivio.errors import OblivioError
from oblivio.ledger.store import Batch, Claim, LeaseLost, Ledger
from oblivio.tracking.registry import (
    CHAMPION,
    TAG,
    client,
    forgotten,
    resolve_version,
    version_evidence,
    version_for_batch,
)
from oblivio.tracking.store import connect

KINDS = ("classes", "ids")


def part_key(batch_id: str, kind: str) -> str:
    """The deletion-batch key one part of a batch registers under."""
    return f"{batch_id}.{kind}"


def _champion(model_name: str):
    connect()
    return resolve_version(f"models:/{model_name}@{CHAMPION}")


def honour_met(ledger: Ledger, batch: Batch) -> list[int]:
    """Honour at once, by the champion, the batch's class requests whose classes it has already
    forgotten (a manual promote, or ``oblivio run``, got there first). Returns the classes the
    batch still has to forget."""
    class_requests = [r for r in batch.requests if r.kind == "classes"]
    if not class_requests:
        return batch.classes
    champion = _champion(batch.model_name)
    already, _ = forgotten(champion.tags)
    met = [r.id for r in class_requests
           if {int(c) for c in ledger.items_of(r.id)} <= already]
    if met:
        ledger.honour(batch.claim, "classes", str(champion.version), request_ids=met,
                      how="the champion had already forgotten it", **version_evidence(champion))
    return [c for c in batch.classes if c not in already]


#: a run folder kfp's local runner makes: ``<pipeline name>-YYYY-MM-DD-HH-MM-SS-ffffff``
LOCAL_RUN = re.compile(r"^[a-z0-9-]+-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{6}$")


def run_root_of(artifact_uri: str, job_id: str) -> str | None:
    """The pipeline-root folder of the run that wrote ``artifact_uri``, or None when the
    layout is not one of a run's (nothing is then recorded for erasure: a guess could name a
    folder far wider than the run's). The Kubeflow backend puts every output under
    ``<pipeline root>/<pipeline name>/<run id>/`` (its driver's ``GenerateOutputURI``; a task,
    and in newer versions a salt, below that); kfp's local runner under
    ``<pipeline root>/<pipeline name>-<timestamp>/<task>/<output>``."""
    marker = f"/{job_id}/"
    if job_id and marker in artifact_uri:
        return artifact_uri[:artifact_uri.index(marker) + len(marker) - 1]
    parts = artifact_uri.rstrip("/").split("/")
    if len(parts) >= 4 and LOCAL_RUN.match(parts[-3]):
        return "/".join(parts[:-2])
    return None


def claim_step(ledger: Ledger, model_name: str, batch_root: str, lease: timedelta,
               owner: str, max_attempts: int = 3, run_root: str | None = "",
               shadows: str = "") -> tuple[Batch | None, dict[str, str]]:
    """Claim the next batch (a batch whose runs died ``max_attempts`` times fails instead).
    Returns it and what a run needs: ``batch_id`` ("" when nothing is pending), ``token``
    (the claim's fencing token), ``hold`` (the claim and its lease, for ``held``),
    ``forget_classes`` and ``forget_ids_uri`` ("" for a part with
    nothing to do), and the keys each part registers under; the ids are written to
    ``<batch_root>/<batch>/ids.parquet``. ``run_root``: the Kubeflow run's pipeline-root
    folder, recorded to be erased once the batch is over ("": none, as for ``oblivio batch
    run``, which erases its own; None: not recognised, said on stderr)."""
    connect()  # an unreachable MLflow fails here, before anything is claimed
    batch = ledger.claim(model_name, owner, lease, max_claims=max_attempts)
    if batch is None:
        return None, {"batch_id": "", "token": "", "hold": "", "forget_classes": "",
                      "forget_ids_uri": "", "classes_key": "", "ids_key": ""}
    if run_root:
        ledger.record_copy(batch.claim, "pipeline-root intermediates", run_root)
    if shadows:
        ledger.record_copy(batch.claim, SHADOWS, shadows)
    elif run_root is None:
        print(f"warning: batch {batch.id}: the run's pipeline-root folder is not one oblivio "
              "recognises; its copies there are not erased by the batch", file=sys.stderr)
    classes = honour_met(ledger, batch)
    ids_uri = ""
    if batch.ids:
        ids_uri = f"{batch_root.rstrip('/')}/{batch.id}/ids.parquet"
        write_sample_ids(ids_uri, batch.ids)
        ledger.record_ids(batch.claim, ids_sha256(batch.ids), ids_uri)
    return batch, {"batch_id": batch.id, "token": str(batch.claims),
                   "hold": hold_of(batch, lease),
                   "forget_classes": ",".join(map(str, classes)),
                   "forget_ids_uri": ids_uri, "classes_key": part_key(batch.id, "classes"),
                   "ids_key": part_key(batch.id, "ids")}


@contextmanager
def holding(ledger: Ledger, claim: Claim, lease: timedelta) -> Iterator[threading.Event]:
    """Renew the lease now and then every third of it while the block runs; the event is set
    when a renewal was refused (the batch is no longer this run's)."""
    ledger.renew(claim, lease)
    lost, done = threading.Event(), threading.Event()

    def beat() -> None:
        while not done.wait(lease.total_seconds() / 3):
            try:
                ledger.renew(claim, lease)
            except LeaseLost:
                lost.set()
                return

    thread = threading.Thread(target=beat, name=f"lease-{claim.batch_id}", daemon=True)
    thread.start()
    try:
        yield lost
    finally:
        done.set()
        thread.join()


def hold_of(batch: Batch, lease: timedelta) -> str:
    """The claim and its lease as one string, what ``held`` takes in a pipeline step."""
    return json.dumps({"batch_id": batch.id, "owner": batch.owner, "token": batch.claims,
                       "lease_s": lease.total_seconds()})


@contextmanager
def held(hold: str) -> Iterator[None]:
    """What a pipeline step of a deletion batch runs its work in (``hold`` from the claim; ""
    outside a batch: nothing): the batch's lease is renewed while the step works, so a long
    step never loses it, and a step whose run has lost the batch fails instead of producing
    what that run may no longer register."""
    if not hold:
        yield
        return
    spec = json.loads(hold)
    claim = Claim(spec["batch_id"], spec["owner"], int(spec["token"]))
    with holding(Ledger(), claim, timedelta(seconds=spec["lease_s"])) as lost:
        yield
    if lost.is_set():
        raise LeaseLost(f"batch {claim.batch_id} was taken over while this step ran")


def settle(ledger: Ledger, claim: Claim, model_name: str, kind: str) -> str:
    """Honour the batch's ``kind`` requests by the version counted for that part, which must be
    the champion; otherwise raise why not. Returns the version."""
    connect()
    number = ledger.counted_version(claim.batch_id, kind)
    if number is None:
        version = version_for_batch(model_name, part_key(claim.batch_id, kind))
        if version is None:
            raise OblivioError(f"no version was registered for the batch's {kind}")
        number = ledger.count_version(claim, kind, str(version.version))
    version = client().get_model_version(model_name, number)
    champion = str(client().get_model_version_by_alias(model_name, CHAMPION).version)
    if champion != number:
        gate = version.tags.get(f"{TAG}gate", "")
        outcome = gate if gate.startswith("failed") else version.tags.get(f"{TAG}promotion", "")
        raise OblivioError(f"version {number} ({kind}) did not become {CHAMPION}: {outcome}")
    ledger.honour(claim, kind, number, **version_evidence(version))
    # a promotion may have moved the champion since the check above, to a version that does
    # not honour what was just honoured: it goes back to one that does

    restore_honouring_champion(model_name)
    return number


def settle_part(ledger: Ledger, claim: Claim, model_name: str, kind: str, max_attempts: int,
                failure: str = "") -> str | None:
    """Settle one part still claimed; when it cannot be (or its run failed with ``failure``),
    only that part's requests go back, and the reason is returned instead of raised, so the
    other part carries on. Returns None when it was honoured (or had nothing claimed)."""
    if not any(r.kind == kind for r in ledger.claimed_in(claim.batch_id)):
        return None
    try:
        settle(ledger, claim, model_name, kind)
        return None
    except LeaseLost:
        raise  # the batch is another run's: settling or failing it is that run's job
    except OblivioError as exc:
        reason = failure or str(exc)  # the run's own error says more than a missing version
        ledger.fail(claim, f"{kind}: {reason}", max_attempts, kind=kind)
        return reason


def complete_step(ledger: Ledger, claim: Claim, model_name: str, max_attempts: int,
                  failure: str = "", kinds: tuple[str, ...] = KINDS,
                  keep: str | None = None) -> list[dict]:
    """Settle every part of the batch (of ``kinds``) still claimed, each on its own, and erase
    what finished batches left (ids files, runs' pipeline-root folders but ``keep``); raises,
    after the ledger recorded it, when any part of the batch failed, now or earlier: a
    retried step must not find nothing left to settle and pass, turning the run green.
    Returns the erasure receipts."""
    for kind in kinds:
        settle_part(ledger, claim, model_name, kind, max_attempts, failure)
    receipts = erase_batch_files(ledger, model_name, keep)  # copies go once a batch is over
    row = ledger.batch_row(claim.batch_id)
    if row["error"]:
        left = [r for r in ledger.find(batch_id=claim.batch_id) if r.state != "honoured"]
        again = sum(r.state == "pending" for r in left)
        raise OblivioError(f"batch {claim.batch_id} failed: {row['error']} ({again} request(s) "
                           f"back to pending, {len(left) - again} failed for good)")
    return receipts


def settle_step(ledger: Ledger, claim: Claim, model_name: str, kind: str,
                max_attempts: int) -> str:
    """The pipeline's step after a part's run (or in its place when the batch has no such
    part): settle the part (a failed part's requests go back; the run carries on to the other
    part), and return the champion's version, which the next part starts from."""
    if kind not in KINDS:
        raise OblivioError(f"unknown part {kind!r} (one of {', '.join(KINDS)})")
    reason = settle_part(ledger, claim, model_name, kind, max_attempts)
    if reason:
        print(f"{claim.batch_id} {kind}: sent back ({reason})")
    return str(_champion(model_name).version)
