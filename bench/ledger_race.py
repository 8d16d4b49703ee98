"""The ledger's batch protocol raced (issue 39): 8 processes claim, stall, count a version,
honour or fail, with half-second leases and requests arriving all along; measured with the
ledger's fence and, as the control, without it, on SQLite and on a real PostgreSQL server.

    python bench/ledger_race.py --seconds 20 [--postgres]

Counted from the ledger's own history afterwards: batches, takeovers, writes the fence refused,
writes by a claim that had lost its batch (violations), batch parts counted twice, batches left
claimed with nothing in them. Writes bench/results/ledger_race.json; ``tests/test_ledger_race.py``
runs the same race (shorter) as a test.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from oblivio.ledger.store import LeaseLost, Ledger
from oblivio.ledger.tables import batches

LEASE = timedelta(seconds=0.5)
WORKERS = 8


class Unfenced(Ledger):
    """The control: writes checked against nothing, as before fencing."""

    def _fence(self, conn, claim, moment):
        return conn.execute(select(batches).where(batches.c.id == claim.batch_id)).one()


def _worker(url: str, index: int, fenced: bool, deadline: float, refused) -> None:
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
            with refused.get_lock():
                refused.value += 1


def race(url: str, fenced: bool, seconds: float) -> tuple[Ledger, int]:
    """Seed 43 requests, race the workers for ``seconds``; returns the ledger and how many
    writes the fence refused."""
    ledger = Ledger(url)
    for i in range(40):
        ledger.submit("m", "ids", [f"train-{i}"])
    for c in range(3):
        ledger.submit("m", "classes", [str(c)])
    context = multiprocessing.get_context("fork")
    refused = context.Value("i", 0)
    deadline = time.time() + seconds
    workers = [context.Process(target=_worker, args=(url, i, fenced, deadline, refused))
               for i in range(WORKERS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 60)
    if [w.exitcode for w in workers] != [0] * WORKERS:
        raise RuntimeError(f"a worker died: {[w.exitcode for w in workers]}")
    return ledger, refused.value


def violations(events: list) -> list[str]:
    """Every write the history (``Ledger.events()``) shows by a claim that was not the batch's
    newest."""
    newest: dict[str, int] = {}
    found = []
    for e in events:
        detail = json.loads(e.detail)
        if e.event in ("claimed", "taken_over"):
            newest[e.batch_id] = detail["token"]
        elif e.event in ("honoured", "returned", "failed", "registered") and e.batch_id:
            if detail.get("token") is not None and detail["token"] != newest[e.batch_id]:
                found.append(f"event {e.seq}: {e.event} by claim {detail['token']} of "
                             f"{e.batch_id}, whose newest claim is {newest[e.batch_id]}")
    return found


def parts_counted_twice(events: list) -> int:
    registered = Counter((e.batch_id, json.loads(e.detail)["kind"])
                         for e in events if e.event == "registered")
    return sum(n > 1 for n in registered.values())


def empty_claimed(ledger: Ledger) -> list[str]:
    with ledger.engine.begin() as conn:
        claimed = conn.execute(select(batches.c.id).where(
            batches.c.state == "claimed")).scalars().all()
    return [b for b in claimed if not ledger.claimed_in(b)]


def measure(url: str, fenced: bool, seconds: float) -> dict:
    start = time.perf_counter()
    ledger, refused = race(url, fenced, seconds)
    events = ledger.events()
    counts = Counter(e.event for e in events)
    return {"fenced": fenced, "seconds": round(time.perf_counter() - start, 1),
            "batches": len({e.batch_id for e in events if e.event == "claimed"}),
            "takeovers": counts["taken_over"], "honours": counts["honoured"],
            "refused_writes": refused, "violations": len(violations(events)),
            "parts_counted_twice": parts_counted_twice(events),
            "empty_claimed_batches": len(empty_claimed(ledger))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--postgres", action="store_true",
                        help="also on a PostgreSQL server of its own (Debian's package)")
    args = parser.parse_args()
    import contextlib
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        urls = {"sqlite": lambda n: f"sqlite:///{tmp}/{n}.db"}
        if args.postgres:
            import sys

            from sqlalchemy import create_engine, text

            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's
            from tests.servers import start_postgres

            server = stack.enter_context(start_postgres())

            def pg(name: str) -> str:
                engine = create_engine(server, isolation_level="AUTOCOMMIT")
                with engine.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                engine.dispose()
                return server.rsplit("/", 1)[0] + f"/{name}"

            urls["postgresql"] = pg
        for database, make in urls.items():
            for fenced in (True, False):
                row = {"database": database,
                       **measure(make(f"race_{int(fenced)}"), fenced, args.seconds)}
                print(json.dumps(row))
                rows.append(row)
    out = Path(__file__).parent / "results" / "ledger_race.json"
    out.write_text(json.dumps({"workers": WORKERS, "lease_s": LEASE.total_seconds(),
                               "seconds": args.seconds, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
