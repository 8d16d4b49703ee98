"""The ledger's history: an append-only chain of events, each carrying the SHA-256 of the one
before, so that editing, deleting or inserting a row anywhere breaks every hash after it.
Written inside the transaction of the change it records (and under the ledger's write lock),
so the chain has no forks and no change goes unrecorded."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select

from oblivio.ledger.tables import EVENTS, events

GENESIS = "0" * 64


def _canonical(seq: int, at: datetime, model_name: str, event: str, request_id: str | None,
               batch_id: str | None, detail: str) -> bytes:
    return json.dumps([seq, at.astimezone(UTC).isoformat(timespec="microseconds"), model_name,
                       event, request_id, batch_id, detail], separators=(",", ":")).encode()


def digest(prev_hash: str, *fields) -> str:
    return hashlib.sha256(prev_hash.encode() + _canonical(*fields)).hexdigest()


def append(conn: Connection, at: datetime, model_name: str, event: str,
           request_id: str | None = None, batch_id: str | None = None, **detail) -> None:
    """Record one event after the last."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    last = conn.execute(select(events.c.seq, events.c.hash)
                        .order_by(events.c.seq.desc()).limit(1)).first()
    seq, prev = (last.seq + 1, last.hash) if last is not None else (1, GENESIS)
    text = json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)
    conn.execute(insert(events), {
        "seq": seq, "at": at, "model_name": model_name, "event": event, "request_id": request_id,
        "batch_id": batch_id, "detail": text, "prev_hash": prev,
        "hash": digest(prev, seq, at, model_name, event, request_id, batch_id, text)})


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes: they were stored in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def breaks(rows) -> list[str]:
    """Where the chain does not hold, one line each: a row whose hash is not its content's, a
    row that does not point at the one before, a gap in the sequence."""
    found, prev, expect = [], GENESIS, 1
    for row in rows:
        if row.seq != expect:
            found.append(f"event {expect}" + (f" to {row.seq - 1}" if row.seq - 1 > expect else "")
                         + " missing")
        if row.prev_hash != prev:
            found.append(f"event {row.seq} does not follow event {row.seq - 1} (its prev_hash "
                         "differs)")
        if row.hash != digest(row.prev_hash, row.seq, aware(row.at), row.model_name, row.event,
                              row.request_id, row.batch_id, row.detail):
            found.append(f"event {row.seq} ({row.event}) was altered after it was written")
        prev, expect = row.hash, row.seq + 1
    return found
