"""The ledger on both databases it supports (SQLite, and a real PostgreSQL server started by the
``postgres`` fixture): intake in one transaction (idempotent, a unique ticket, any size),
exactly-once claims under concurrency, fenced writes (a run that lost its lease writes
nothing), failures split off so only the request at fault fails, and the hash-chained history
that any plain SQL edit breaks."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta

import pytest
from sqlalchemy import text

from oblivio.deletion.batches import held, hold_of
from oblivio.errors import OblivioError
from oblivio.ledger import history
from oblivio.ledger.store import LeaseLost, Ledger, items_sha256
from oblivio.models.forgotten import forgotten_ids, provenance_after

HOUR = timedelta(hours=1)


def test_submit_is_idempotent_and_refuses_what_another_request_names(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    first, new = ledger.submit("m", "ids", ["train-2", "train-1"], ticket="T-1")
    assert new and (first.state, first.count, first.attempts, first.ticket) == (
        "pending", 2, 0, "T-1")
    assert first.sha256 == items_sha256(["train-1", "train-2"])  # computed, never passed
    # the same request again, by its ticket or by its items: the one recorded
    assert ledger.submit("m", "ids", ["train-1", "train-2"], ticket="T-1") == (first, False)
    assert ledger.submit("m", "ids", ["train-2", "train-1"]) == (first, False)
    with pytest.raises(OblivioError, match=rf"ticket T-1 is already request {first.id}, which "
                                           r"names other ids: nothing recorded"):
        ledger.submit("m", "ids", ["train-9"], ticket="T-1")
    with pytest.raises(OblivioError, match=rf"sample train-2 already in request {first.id} "
                                           r"\(pending\): nothing recorded"):
        ledger.submit("m", "ids", ["train-3", "train-2"])
    assert [r.id for r in ledger.find()] == [first.id]
    assert ledger.items_of(first.id) == ["train-1", "train-2"]
    # the same image for another model, a class with the same text, the ticket elsewhere
    ledger.submit("other", "ids", ["train-2"], ticket="T-1")
    ledger.submit("m", "classes", ["2"])
    assert len(ledger.find(model_name="m")) == 2 and len(ledger.find(ticket="T-1")) == 2
    with pytest.raises(OblivioError, match="unknown state 'done'"):
        ledger.find(state="done")


def test_a_request_of_any_size_is_one_transaction(ledger_url: str) -> None:
    """70,000 ids: more than PostgreSQL's 65535 parameters in one statement."""
    ledger = Ledger(ledger_url)
    ids = [f"train-{i:05d}" for i in range(70_000)]
    request, _ = ledger.submit("m", "ids", ids)
    assert request.count == 70_000 and len(ledger.items_of(request.id)) == 70_000
    with pytest.raises(OblivioError, match=r"sample train-00000 and 69999 more already in"):
        ledger.submit("m", "ids", ids[::-1] + ["train-x"])
    assert ledger.claim("m", "run", HOUR).ids == ids


def test_concurrent_class_intakes_leave_a_class_to_keep(ledger_url: str) -> None:
    """Two submits at once each see the other's class pending (their checks and inserts are
    one locked transaction), so they cannot together queue every class."""
    barrier, outcomes = threading.Barrier(4), []

    def submit(c: int) -> None:
        own = Ledger(ledger_url)
        barrier.wait()
        try:
            own.submit("m", "classes", [str(c)], total_classes=4)
            outcomes.append("recorded")
        except OblivioError as exc:
            outcomes.append(str(exc))

    Ledger(ledger_url)
    threads = [threading.Thread(target=submit, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("recorded") == 3, outcomes
    assert "nothing would be left to keep" in next(o for o in outcomes if o != "recorded")


def test_claim_takes_every_pending_request_once(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    assert ledger.claim("m", "run-1", HOUR) is None  # nothing pending: nothing to do
    a, _ = ledger.submit("m", "ids", ["train-1", "train-2"])
    b, _ = ledger.submit("m", "classes", ["7"])
    batch = ledger.claim("m", "run-1", HOUR)
    assert {r.id for r in batch.requests} == {a.id, b.id}
    assert (batch.ids, batch.classes, batch.claims) == (["train-1", "train-2"], [7], 1)
    assert ledger.claim("m", "run-2", HOUR) is None  # claimed, lease alive
    c, _ = ledger.submit("m", "ids", ["train-3"])
    later = ledger.claim("m", "run-2", HOUR)
    assert [r.id for r in later.requests] == [c.id] and later.id != batch.id
    assert {r.state for r in ledger.find()} == {"claimed"}


def test_the_ids_a_model_records_by_digest_are_read_back(ledger_url: str) -> None:
    """A model records a deletion by the digest of the ids it forgot (one request's, or a
    batch's union); the ledger alone gives the ids back, and only ones that hash to it."""
    ledger = Ledger(ledger_url)
    a, _ = ledger.submit("m", "ids", ["train-1", "train-2"])
    b, _ = ledger.submit("m", "ids", ["train-3"])
    ledger.submit("m", "classes", ["7"])
    batch = ledger.claim("m", "run-1", HOUR)
    union = items_sha256(batch.ids)
    ledger.record_ids(batch.claim, union)
    assert ledger.ids_with_sha256(union) == ["train-1", "train-2", "train-3"]
    assert ledger.ids_with_sha256(a.sha256) == ["train-1", "train-2"]
    assert ledger.ids_with_sha256(b.sha256) == ["train-3"]
    assert ledger.ids_with_sha256(items_sha256(["train-1"])) is None  # part of a request
    assert ledger.ids_with_sha256(items_sha256(["7"])) is None  # a class is no image


def test_a_batch_under_a_live_lease_is_named_as_held(ledger_url: str) -> None:
    """What ``batch run`` says when nothing is left to claim but another run holds a batch."""
    ledger = Ledger(ledger_url)
    ledger.submit("m", "classes", ["7"])
    assert ledger.held_batches("m") == []
    batch = ledger.claim("m", "run-1", timedelta(seconds=1))
    assert [(b["id"], b["owner"]) for b in ledger.held_batches("m")] == [(batch.id, "run-1")]
    assert ledger.held_batches("other") == []
    time.sleep(1.2)  # its lease ran out: no longer held, the next claim takes it over
    assert ledger.held_batches("m") == []


def test_concurrent_claims_never_share_a_request(ledger_url: str) -> None:
    """Submitters and claimers at once, each through its own connection pool."""
    ledger = Ledger(ledger_url)
    claimed: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def submit(start: int) -> None:
        own = Ledger(ledger_url)
        for i in range(start, start + 15):
            own.submit("m", "ids", [f"train-{i}"])

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


def test_a_run_that_lost_its_lease_writes_nothing(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    request, _ = ledger.submit("m", "ids", ["train-1"])
    dead = ledger.claim("m", "stalled-run", timedelta(0))  # its lease runs out at once
    # expired, and nobody took it over yet: still refused, whatever the run writes
    for write in (lambda: ledger.renew(dead.claim, HOUR),
                  lambda: ledger.honour(dead.claim, "ids", "7"),
                  lambda: ledger.fail(dead.claim, "gates", 3),
                  lambda: ledger.count_version(dead.claim, "ids", "7"),
                  lambda: ledger.record_ids(dead.claim, "digest")):
        with pytest.raises(LeaseLost, match=r"no longer this run's \(its lease ran out"):
            write()
    ledger.submit("m", "ids", ["train-2"])  # arrives meanwhile: waits for the next batch
    again = ledger.claim("m", "rerun", HOUR)
    assert (again.id, again.claims, again.owner) == (dead.id, 2, "rerun")
    assert [r.id for r in again.requests] == [request.id]
    assert ledger.get(request.id).attempts == 1  # taking over is not a new attempt
    with pytest.raises(LeaseLost, match=r"\(taken over by rerun, claim 2\)"):
        ledger.honour(dead.claim, "ids", "7")
    # the same owner name under an older claim (a retried step of one job) is refused too
    with pytest.raises(LeaseLost, match="taken over by rerun, claim 2"):
        ledger.renew(type(again.claim)(again.id, "rerun", 1), HOUR)
    before = ledger.batch_row(dead.id)["lease_until"]
    assert ledger.renew(again.claim, 2 * HOUR) > before
    assert ledger.count_version(again.claim, "ids", "7") == "7"
    assert ledger.count_version(again.claim, "ids", "8") == "7"  # one version a part
    assert ledger.honour(again.claim, "ids", "7") == 1
    with pytest.raises(LeaseLost, match=r"no longer this run's \(completed\)"):
        ledger.renew(again.claim, HOUR)
    assert ledger.get(request.id).state == "honoured"


def test_a_model_s_earlier_deletions_are_read_from_the_ledger(
        ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a continual request and the evaluation do with a model that records its deletions
    by digest: the ids come back from the ledger (a batch's union, a request alone), checked
    against the model's digest; a deletion the ledger does not hold is one error line."""
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", ledger_url)
    ledger = Ledger(ledger_url)
    ledger.submit("m", "ids", ["train-1", "train-2"])
    ledger.submit("m", "ids", ["train-3"])
    batch = ledger.claim("m", "run-1", HOUR)
    ledger.record_ids(batch.claim, items_sha256(batch.ids))
    ledger.submit("m", "ids", ["train-4"])
    every = ["train-1", "train-2", "train-3", "train-4"]
    config = {"provenance": provenance_after(
        {"provenance": provenance_after({}, batch.ids, batch.ids)}, ["train-4"], every)}
    assert [d["count"] for d in config["provenance"]["deletions"]] == [3, 1]
    assert forgotten_ids(config, "model") == every
    assert forgotten_ids(config, "model", known=["train-4"]) == every
    stranger = {"provenance": provenance_after({}, ["train-8"], ["train-8"])}
    with pytest.raises(OblivioError, match=r"model has forgotten 1 training images, recorded "
                                           r"by digest .* only"):
        forgotten_ids(stranger, "model")


def test_a_pipeline_step_holds_its_batch_while_it_works(ledger_url: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A Kubeflow step that runs the model renews the batch's lease while it works (the claim's
    ``hold``); a step of a run that lost its batch fails, before or after its work."""
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", ledger_url)
    ledger = Ledger(ledger_url)
    ledger.submit("m", "ids", ["train-1"])
    lease = timedelta(seconds=1.5)
    batch = ledger.claim("m", "kfp:job-1", lease)
    hold = hold_of(batch, lease)
    with held(hold):
        time.sleep(3)  # twice the lease: renewed every half second
    assert ledger.claim("m", "kfp:job-2", lease) is None  # still job-1's
    with pytest.raises(LeaseLost, match="taken over while this step ran"), held(hold):
        with ledger.engine.begin() as conn:  # another run takes the batch over meanwhile
            conn.execute(text("UPDATE batches SET claims = claims + 1"))
        time.sleep(1.2)
    time.sleep(1.6)  # no step renews it now: its lease runs out, job-2 takes it over
    assert ledger.claim("m", "kfp:job-2", lease).claims == 3
    with pytest.raises(LeaseLost), held(hold):
        raise AssertionError("a step of the run that lost the batch must not start its work")
    with held(""):  # outside a batch: nothing to hold
        pass


def test_a_failing_request_is_split_off_and_fails_alone(ledger_url: str) -> None:
    """Three image requests fail together: none uses an attempt; each is claimed alone next,
    so the one at fault fails by itself and the others are honoured. The classes' part never
    takes the images down with it."""
    ledger = Ledger(ledger_url)
    good = [ledger.submit("m", "ids", [f"train-{i}"])[0] for i in (1, 2)]
    bad, _ = ledger.submit("m", "ids", ["train-3"])
    classes, _ = ledger.submit("m", "classes", ["7"])
    batch = ledger.claim("m", "run", HOUR)
    back = ledger.fail(batch.claim, "classes: gates failed", 2, kind="classes")
    assert [(r.id, r.state) for r in back] == [(classes.id, "pending")]
    assert {r.id for r in ledger.claimed_in(batch.id)} == {*(r.id for r in good), bad.id}
    back = ledger.fail(batch.claim, "ids: gates failed", 2, kind="ids")
    assert {(r.state, r.attempts, r.solo) for r in back} == {("pending", 0, True)}
    assert ledger.batch_row(batch.id)["state"] == "failed"
    outcomes = {}
    for _ in range(6):
        alone = ledger.claim("m", "run", HOUR)
        if alone is None:
            break
        assert len(alone.requests) == 1
        request = alone.requests[0]
        if request.id == bad.id:
            outcomes[request.id] = ledger.fail(alone.claim, "ids: gates failed", 2)[0].state
        else:
            ledger.honour(alone.claim, request.kind, "5")
            outcomes[request.id] = "honoured"
    assert ledger.get(bad.id).state == "failed" and ledger.get(bad.id).attempts == 2
    assert all(ledger.get(r.id).state == "honoured" for r in [*good, classes])
    # a request that failed for good gives its images back: they can be asked for again
    assert ledger.submit("m", "ids", ["train-3"])[0].state == "pending"


def test_concurrent_honours_of_one_batch_complete_it(ledger_url: str) -> None:
    """Under READ COMMITTED two honours of one batch could each see the other's part still
    claimed and leave the batch claimed forever; the ledger's lock serialises them."""
    ledger = Ledger(ledger_url)
    for trial in range(5):
        ledger.submit("m", "ids", [f"train-{trial}"])
        ledger.submit("m", "classes", [str(trial)])
        batch = ledger.claim("m", "run", HOUR)
        barrier = threading.Barrier(2)

        def honour(kind: str, claim=batch.claim, barrier=barrier) -> None:
            own = Ledger(ledger_url)
            barrier.wait()
            own.honour(claim, kind, "3")

        threads = [threading.Thread(target=honour, args=(k,)) for k in ("ids", "classes")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert ledger.batch_row(batch.id)["state"] == "completed"
    assert ledger.claim("m", "run", HOUR) is None


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
    request, _ = ledger.submit("m", "ids", ["train-1"])
    first = ledger.claim("m", "run-1", timedelta(0), max_claims=2)
    assert ledger.claim("m", "run-2", timedelta(0), max_claims=2).id == first.id
    assert ledger.claim("m", "run-3", HOUR, max_claims=2) is None  # died twice: failed
    failed = ledger.get(request.id)
    assert failed.state == "failed" and "died 2 time(s)" in failed.last_error
    assert ledger.batch_row(first.id)["state"] == "failed"
    assert [r.id for r in ledger.claimed_in(first.id)] == []


def test_overdue_requests_are_found(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    due, _ = ledger.submit("m", "ids", ["train-1"], deadline=date(2026, 1, 10))
    ledger.submit("m", "ids", ["train-2"], deadline=date(2026, 1, 20))
    done, _ = ledger.submit("m", "classes", ["1"], deadline=date(2026, 1, 5), met_by="4")
    assert done.state == "honoured" and done.version == "4"  # met already: honoured at once
    assert [r.id for r in ledger.find(overdue=date(2026, 1, 15))] == [due.id]
    assert ledger.get(due.id).overdue(date(2026, 1, 15))


def test_every_change_is_in_the_chain_and_a_plain_update_breaks_it(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    request, _ = ledger.submit("m", "ids", ["train-1"], ticket="T-1")
    batch = ledger.claim("m", "run", HOUR)
    ledger.count_version(batch.claim, "ids", "3")
    ledger.honour(batch.claim, "ids", "3", weights_sha256="ab" * 32)
    ledger.record("m", "champion", version="3", previous="1")
    names = [e.event for e in ledger.events()]
    assert names == ["submitted", "claimed", "registered", "honoured", "champion"]
    assert history.breaks(ledger.events()) == []
    with ledger.engine.begin() as conn:  # who honoured it, changed by hand
        conn.execute(text("UPDATE events SET detail = replace(detail, '\"3\"', '\"2\"') "
                          "WHERE event = 'honoured'"))
    assert history.breaks(ledger.events()) == ["event 4 (honoured) was altered after it was "
                                               "written"]
    with ledger.engine.begin() as conn:
        conn.execute(text("DELETE FROM events WHERE seq = 2"))
    found = history.breaks(ledger.events())
    assert "event 2 missing" in found and any("does not follow" in b for b in found)
