"""A deletion batch's two ends, shared by ``oblivio batch run`` and the Kubeflow batch pipeline:
claim what is pending (writing the images' ids where the pipeline's steps read them), and settle
each part once its run is over: honoured when the version registered for it is the champion,
otherwise back to pending with the reason.

Each part registers under ``<batch>.<kind>`` (classes, ids); registration is idempotent on that
key, so a batch taken over after its run died finds the version the dead run made.
"""

from __future__ import annotations

from datetime import timedelta

from oblivio.errors import OblivioError
from oblivio.ledger.store import Batch, Ledger

KINDS = ("classes", "ids")


def part_key(batch_id: str, kind: str) -> str:
    """The deletion-batch key one part of a batch registers under."""
    return f"{batch_id}.{kind}"


def claim_step(ledger: Ledger, model_name: str, batch_root: str, lease: timedelta,
               owner: str, max_attempts: int = 3) -> tuple[Batch | None, dict[str, str]]:
    """Claim the next batch (a batch whose runs died ``max_attempts`` times fails instead).
    Returns it and what a run needs: ``batch_id`` ("" when nothing is pending),
    ``forget_classes`` and ``forget_ids_uri`` ("" for a part with nothing to do), and the
    keys each part registers under; the ids are written to ``<batch_root>/<batch>/ids.parquet``.
    """
    from oblivio.data.sample_ids import ids_sha256, write_sample_ids

    batch = ledger.claim(model_name, owner, lease, max_claims=max_attempts)
    if batch is None:
        return None, {"batch_id": "", "forget_classes": "", "forget_ids_uri": "",
                      "classes_key": "", "ids_key": ""}
    ids_uri = ""
    if batch.ids:
        ids_uri = f"{batch_root.rstrip('/')}/{batch.id}/ids.parquet"
        write_sample_ids(ids_uri, batch.ids)
        ledger.record_run(batch.id, ids_sha256=ids_sha256(batch.ids))
    return batch, {"batch_id": batch.id,
                   "forget_classes": ",".join(map(str, batch.classes)),
                   "forget_ids_uri": ids_uri, "classes_key": part_key(batch.id, "classes"),
                   "ids_key": part_key(batch.id, "ids")}


def settle(ledger: Ledger, model_name: str, batch_id: str, kind: str) -> str:
    """Honour the batch's ``kind`` requests by the version registered for them, which must be
    the champion; otherwise raise why not. Returns the version."""
    from oblivio.tracking.publish import version_for_batch
    from oblivio.tracking.registry import CHAMPION, TAG, client
    from oblivio.tracking.store import connect

    connect()
    version = version_for_batch(model_name, part_key(batch_id, kind))
    if version is None:
        raise OblivioError(f"no version was registered for the batch's {kind}")
    number = str(version.version)
    ledger.record_run(batch_id, version=number)
    champion = str(client().get_model_version_by_alias(model_name, CHAMPION).version)
    if champion != number:
        gate = version.tags.get(f"{TAG}gate", "")
        latest = client().get_model_version(model_name, number).tags
        outcome = gate if gate.startswith("failed") else latest.get(f"{TAG}promotion", "")
        raise OblivioError(f"version {number} ({kind}) did not become {CHAMPION}: {outcome}")
    ledger.honour(batch_id, kind, number)
    # a promotion may have moved the champion since the check above, to a version that does
    # not honour what was just honoured: it goes back to one that does
    from oblivio.tracking.promotion import restore_honouring_champion

    restore_honouring_champion(model_name)
    return number


def complete_step(ledger: Ledger, model_name: str, batch_id: str, max_attempts: int,
                  failure: str = "", kinds: tuple[str, ...] = KINDS) -> dict[str, str]:
    """Settle every part of the batch (of ``kinds``) still claimed; a part that cannot be
    settled (or the run's ``failure``) sends the rest back. Returns kind -> version honoured;
    raises when any part failed, after the ledger has recorded it. A batch that already
    failed fails again with its reason: a retried step must not find nothing left to settle
    and pass, turning the run green."""
    row = ledger.batch_row(batch_id)
    if row["state"] == "failed":
        raise OblivioError(f"batch {batch_id} failed already: {row['error']}")
    pending = {r.kind for r in ledger.claimed_in(batch_id)}
    honoured: dict[str, str] = {}
    try:
        for kind in (k for k in kinds if k in pending):
            try:
                honoured[kind] = settle(ledger, model_name, batch_id, kind)
            except OblivioError:
                if failure:  # the run failed: its error says more than a missing version
                    raise OblivioError(failure) from None
                raise
    except OblivioError as exc:
        back = ledger.fail(batch_id, str(exc), max_attempts)
        again = sum(r.state == "pending" for r in back)
        raise OblivioError(f"batch {batch_id} failed: {exc} ({again} request(s) back to "
                           f"pending, {len(back) - again} failed for good)") from None
    return honoured


def settle_step(ledger: Ledger, model_name: str, batch_id: str, kind: str,
                max_attempts: int) -> str:
    """The pipeline's step after a part's run (or in its place when the batch has no such
    part): settle it, and return the champion's version, which the next part starts from."""
    from oblivio.tracking.registry import CHAMPION, client
    from oblivio.tracking.store import connect

    if kind not in KINDS:
        raise OblivioError(f"unknown part {kind!r} (one of {', '.join(KINDS)})")
    complete_step(ledger, model_name, batch_id, max_attempts, kinds=(kind,))
    connect()
    return str(client().get_model_version_by_alias(model_name, CHAMPION).version)
