"""The ledger on both databases it supports (SQLite, and a real PostgreSQL server started by the
``postgres`` fixture): intake refusals, exactly-once claims under concurrency, leases that
expire and are taken over, failures that return requests, honoured requests."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from oblivio.errors import OblivioError
from oblivio.ledger.store import Ledger

HOUR = timedelta(hours=1)


def test_submit_refuses_a_sample_already_requested_and_records_nothing(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    first = ledger.submit("m", "ids", ["train-1", "train-2"], "d1", ticket="T-1")
    assert (first.state, first.count, first.attempts, first.ticket) == ("pending", 2, 0, "T-1")
    with pytest.raises(OblivioError, match=rf"sample train-2 already in request {first.id} "
                                           r"\(pending\): nothing recorded"):
        ledger.submit("m", "ids", ["train-3", "train-2"], "d2")
    assert [r.id for r in ledger.find()] == [first.id]
    assert ledger.items_of(first.id) == ["train-1", "train-2"]
    # the same image for another model, and a class with the same text, are other things
    ledger.submit("other", "ids", ["train-2"], "d3")
    ledger.submit("m", "classes", ["2"], "d4")
    assert len(ledger.find(model_name="m")) == 2 and len(ledger.find(ticket="T-1")) == 1
    with pytest.raises(OblivioError, match="unknown state 'done'"):
        ledger.find(state="done")


def test_claim_takes_every_pending_request_once(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    assert ledger.claim("m", "run-1", HOUR) is None  # nothing pending: nothing to do
    a = ledger.submit("m", "ids", ["train-1", "train-2"], "d1")
    b = ledger.submit("m", "classes", ["7"], "d2")
    batch = ledger.claim("m", "run-1", HOUR)
    assert {r.id for r in batch.requests} == {a.id, b.id}
    assert (batch.ids, batch.classes, batch.claims) == (["train-1", "train-2"], [7], 1)
    assert ledger.claim("m", "run-2", HOUR) is None  # claimed, lease alive
    c = ledger.submit("m", "ids", ["train-3"], "d3")
    later = ledger.claim("m", "run-2", HOUR)
    assert [r.id for r in later.requests] == [c.id] and later.id != batch.id
    assert {r.state for r in ledger.find()} == {"claimed"}


def test_concurrent_claims_never_share_a_request(ledger_url: str) -> None:
    """Submitters and claimers at once, each through its own connection pool."""
    ledger = Ledger(ledger_url)
    claimed: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    submitted = threading.Event()

    def submit(start: int) -> None:
        own = Ledger(ledger_url)
        for i in range(start, start + 15):
            own.submit("m", "ids", [f"train-{i}"], f"d{i}")
        submitted.set()

    def claim(name: str) -> None:
        own = Ledger(ledger_url)
        try:
            for _ in range(40):
                batch = own.claim("m", name, HOUR)
                if batch is not None:
                    claimed.extend((batch.id, r.id) for r in batch.requests)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(s,)) for s in (0, 100)]
    threads += [threading.Thread(target=claim, args=(f"run-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    final = ledger.claim("m", "sweep", HOUR)
    if final is not None:
        claimed.extend((final.id, r.id) for r in final.requests)
    request_ids = [r for _, r in claimed]
    assert len(request_ids) == len(set(request_ids)) == 30
    assert {r.state for r in ledger.find()} == {"claimed"}
    for batch_id, request_id in claimed:
        assert ledger.get(request_id).batch_id == batch_id


def test_an_expired_lease_is_taken_over_as_the_same_batch(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    request = ledger.submit("m", "ids", ["train-1"], "d1")
    dead = ledger.claim("m", "killed-run", timedelta(0))  # the run died: its lease runs out
    ledger.submit("m", "ids", ["train-2"], "d2")  # arrives meanwhile: waits for the next batch
    again = ledger.claim("m", "rerun", HOUR)
    assert (again.id, again.claims, again.owner) == (dead.id, 2, "rerun")
    assert [r.id for r in again.requests] == [request.id]
    assert ledger.get(request.id).attempts == 1  # taking over is not a new attempt
    assert ledger.claim("m", "third", HOUR).requests[0].id != request.id
    # the run that died wakes up: renewing its lease is refused, so it stops before working
    with pytest.raises(OblivioError, match=f"batch {dead.id} is no longer this run's "
                                           r"\(taken over by rerun\)"):
        ledger.renew(dead.id, "killed-run", HOUR)
    before = ledger.batch_row(dead.id)["lease_until"]
    assert ledger.renew(dead.id, "rerun", 2 * HOUR) > before
    assert ledger.batch_row(dead.id)["lease_until"] > before
    ledger.honour(dead.id, "ids", "7")
    with pytest.raises(OblivioError, match=r"no longer this run's \(completed\)"):
        ledger.renew(dead.id, "rerun", HOUR)


def test_failures_return_requests_until_the_last_attempt(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    request = ledger.submit("m", "ids", ["train-1"], "d1")
    for attempt in (1, 2):
        batch = ledger.claim("m", "run", HOUR)
        back = ledger.fail(batch.id, f"gates failed ({attempt})", max_attempts=2)
        assert [(r.state, r.attempts) for r in back] == [
            ("pending" if attempt == 1 else "failed", attempt)]
        assert ledger.batch_row(batch.id)["state"] == "failed"
    failed = ledger.get(request.id)
    assert failed.last_error == "gates failed (2)"
    assert ledger.claim("m", "run", HOUR) is None
    # a request that failed for good gives its images back: they can be asked for again
    assert ledger.submit("m", "ids", ["train-1"], "d1").state == "pending"


def test_honour_marks_the_batch_requests_once(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    ids = ledger.submit("m", "ids", ["train-1"], "d1")
    classes = ledger.submit("m", "classes", ["7"], "d2")
    batch = ledger.claim("m", "run", HOUR)
    assert ledger.honour(batch.id, "classes", "3") == 1
    assert ledger.batch_row(batch.id)["state"] == "claimed"  # the images are still to do
    assert ledger.honour(batch.id, "ids", "4") == 1
    assert ledger.honour(batch.id, "ids", "4") == 0  # idempotent
    row = ledger.batch_row(batch.id)
    assert row["state"] == "completed" and row["finished_at"] is not None
    assert (ledger.get(classes.id).version, ledger.get(ids.id).version) == ("3", "4")
    assert ledger.get(ids.id).honoured_at is not None
    with pytest.raises(OblivioError, match=rf"already forgotten by m version 4 \(request "
                                           rf"{ids.id}\)"):
        ledger.submit("m", "ids", ["train-9", "train-1"], "d3")


def test_an_unreachable_ledger_is_one_line(tmp_path) -> None:
    from tests.servers import free_port

    url = f"postgresql+psycopg://oblivio:secret@127.0.0.1:{free_port()}/x"
    with pytest.raises(OblivioError, match=r"^ledger at postgresql\+psycopg://oblivio:\*\*\*@"
                                           r"127.0.0.1:\d+/x is unusable \(.+\)$") as err:
        Ledger(url)
    assert "\n" not in str(err.value) and "secret" not in str(err.value)
    with pytest.raises(OblivioError, match="not a database URL"):
        Ledger("no-such-scheme")


def test_a_batch_whose_runs_keep_dying_fails(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    request = ledger.submit("m", "ids", ["train-1"], "d1")
    first = ledger.claim("m", "run-1", timedelta(0), max_claims=2)
    assert ledger.claim("m", "run-2", timedelta(0), max_claims=2).id == first.id
    assert ledger.claim("m", "run-3", HOUR, max_claims=2) is None  # died twice: failed
    failed = ledger.get(request.id)
    assert failed.state == "failed" and "died 2 time(s)" in failed.last_error
    assert ledger.batch_row(first.id)["state"] == "failed"
    assert [r.id for r in ledger.claimed_in(first.id)] == []
