"""The batch protocol raced for real: 8 processes claim, stall, count a version, honour or
fail, with half-second leases, on SQLite and on a real PostgreSQL server, while requests keep
arriving. Checked afterwards from the ledger's own history and tables:

- no honour, return or fail by a claim that had lost its batch (each carries its fencing
  token, which must be the batch's newest claim at that point of the history);
- one counted version per batch part, and every honour of that part by it;
- no batch left claimed with nothing in it;
- every request honoured, pending, or failed with a reason.

The control that must fail: the same race on a ledger whose fence is removed. The race itself
is bench/ledger_race.py's, which measures it longer."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import select

from bench.ledger_race import LEASE, empty_claimed, race, violations
from oblivio.ledger import history
from oblivio.ledger.store import Ledger
from oblivio.ledger.tables import parts, requests

SECONDS = 12


def _drain(ledger: Ledger) -> None:
    """A healthy run after the race: takes over what the race left (their leases ran out)."""
    time.sleep(LEASE.total_seconds() + 0.1)
    while (batch := ledger.claim("m", "drain", timedelta(minutes=5), max_claims=10)):
        for kind in sorted({r.kind for r in batch.requests}):
            ledger.honour(batch.claim, kind, ledger.count_version(batch.claim, kind, "drain"))


@pytest.mark.slow
def test_eight_racing_processes_never_write_for_a_batch_they_lost(ledger_url: str) -> None:
    ledger, _ = race(ledger_url, fenced=True, seconds=SECONDS)
    assert violations(ledger.events()) == []
    assert history.breaks(ledger.events()) == []
    with ledger.engine.begin() as conn:
        counted = {(p.batch_id, p.kind): p.version for p in conn.execute(select(parts))}
        rows = conn.execute(select(requests)).all()
    empty = empty_claimed(ledger)
    registered = defaultdict(int)
    for e in ledger.events():
        if e.event == "registered":
            registered[(e.batch_id, json.loads(e.detail)["kind"])] += 1
    assert set(registered.values()) == {1}  # one version counted per batch part
    for r in rows:
        if r.state == "honoured" and r.batch_id and (r.batch_id, r.kind) in counted:
            assert r.version == counted[(r.batch_id, r.kind)], r
    assert empty == []
    honoured_by_race = sum(r.state == "honoured" for r in rows)
    assert honoured_by_race > 20  # the race did work, not only lose leases
    _drain(ledger)
    final = ledger.find()
    assert {r.state for r in final} <= {"honoured", "failed"}
    assert all(r.last_error for r in final if r.state == "failed")
    assert all(ledger.batch_row(r.batch_id)["state"] != "claimed" for r in final if r.batch_id)


@pytest.mark.slow
def test_the_race_catches_a_ledger_without_its_fence(tmp_path) -> None:
    """The control that must fail: the same race with the fence removed writes for lost
    batches, and the history shows it."""
    ledger, _ = race(f"sqlite:///{tmp_path / 'ledger.db'}", fenced=False, seconds=SECONDS)
    assert violations(ledger.events()) != []
