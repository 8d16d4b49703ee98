"""The batch protocol raced for real: 8 processes claim, stall, count a version, honour or
fail, with half-second leases, on SQLite and on a real PostgreSQL server, while requests keep
arriving. Checked afterwards from the ledger's own history and tables:

- no honour, return or fail by a claim that had lost its batch (each carries its fencing
  token, which must be the batch's newest claim at that point of the history);
- one counted version per batch part, and every honour of that part by it;
- no batch left claimed with nothing in it;
- every request honoured, pending, or failed with a reason.

The control that must fail: the same race on a ledger whose fence is removed."""

from __future__ import annotations

import json
import multiprocessing
import random
import time
from collections import defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import select

from oblivio.ledger import history
from oblivio.ledger.store import LeaseLost, Ledger
from oblivio.ledger.tables import batches, parts, requests

LEASE = timedelta(seconds=0.5)
SECONDS = 12


class Unfenced(Ledger):
    """The control: writes checked against nothing, as before fencing."""

    def _fence(self, conn, claim, moment):
        return conn.execute(select(batches).where(batches.c.id == claim.batch_id)).one()


def _worker(url: str, index: int, fenced: bool, deadline: float) -> None:
    ledger = (Ledger if fenced else Unfenced)(url)
    rng = random.Random(index)
    owner, submitted = f"worker-{index}", 0
    while time.time() < deadline:
        if rng.random() < 0.3:  # requests keep arriving while batches run
            submitted += 1
            ledger.submit("m", "ids", [f"w{index}-{submitted}"])
        batch = ledger.claim("m", owner, LEASE, max_claims=4)
        if batch is None:
            time.sleep(0.02)
            continue
        try:
            for kind in sorted({r.kind for r in batch.requests}):
                # most parts take a moment; some stall past the lease, as a paused pod would
                time.sleep(0.8 if rng.random() < 0.1 else rng.uniform(0, 0.05))
                counted = ledger.count_version(batch.claim, kind, f"{owner}/{batch.claims}")
                if rng.random() < 0.1:
                    ledger.fail(batch.claim, f"{kind}: gates failed", 3, kind=kind)
                else:
                    ledger.honour(batch.claim, kind, counted)
        except LeaseLost:
            continue


def _race(url: str, fenced: bool, seconds: float) -> Ledger:
    ledger = Ledger(url)
    for i in range(40):
        ledger.submit("m", "ids", [f"train-{i}"])
    for c in range(3):
        ledger.submit("m", "classes", [str(c)])
    context = multiprocessing.get_context("fork")
    deadline = time.time() + seconds
    workers = [context.Process(target=_worker, args=(url, i, fenced, deadline))
               for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 60)
    assert [w.exitcode for w in workers] == [0] * 8
    return ledger


def _violations(ledger: Ledger) -> list[str]:
    """Every write the history shows by a claim that was not the batch's newest."""
    newest: dict[str, int] = {}
    found = []
    for e in ledger.events():
        detail = json.loads(e.detail)
        if e.event == "claimed" or e.event == "taken_over":
            newest[e.batch_id] = detail["token"]
        elif e.event in ("honoured", "returned", "failed", "registered") and e.batch_id:
            if detail.get("token") is not None and detail["token"] != newest[e.batch_id]:
                found.append(f"event {e.seq}: {e.event} by claim {detail['token']} of "
                             f"{e.batch_id}, whose newest claim is {newest[e.batch_id]}")
    return found


def _drain(ledger: Ledger) -> None:
    """A healthy run after the race: takes over what the race left (their leases ran out)."""
    time.sleep(LEASE.total_seconds() + 0.1)
    while (batch := ledger.claim("m", "drain", timedelta(minutes=5), max_claims=10)):
        for kind in sorted({r.kind for r in batch.requests}):
            ledger.honour(batch.claim, kind, ledger.count_version(batch.claim, kind, "drain"))


@pytest.mark.slow
def test_eight_racing_processes_never_write_for_a_batch_they_lost(ledger_url: str) -> None:
    ledger = _race(ledger_url, fenced=True, seconds=SECONDS)
    assert _violations(ledger) == []
    assert history.breaks(ledger.events()) == []
    with ledger.engine.begin() as conn:
        counted = {(p.batch_id, p.kind): p.version for p in conn.execute(select(parts))}
        rows = conn.execute(select(requests)).all()
        claimed = conn.execute(select(batches.c.id).where(
            batches.c.state == "claimed")).scalars().all()
    empty = [b for b in claimed if not ledger.claimed_in(b)]
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
    ledger = _race(f"sqlite:///{tmp_path / 'ledger.db'}", fenced=False, seconds=SECONDS)
    assert _violations(ledger) != []
