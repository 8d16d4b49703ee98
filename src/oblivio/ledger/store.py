"""The ledger of deletion requests: SQLite under the oblivio home by default, PostgreSQL (or any
SQLAlchemy URL) from ``OBLIVIO_LEDGER_URL`` on a cluster.

Every change is one transaction under the ledger's write lock (``oblivio.ledger.schema.lock``)
and appends its events to the hash-chained history in that same transaction. Times come from
the database's clock on PostgreSQL, never from a client's.

A batch is claimed under a lease and a fencing token (the claim's number: 1, then one more each
time a run takes the batch over after its lease ran out). Every later write for the batch
(renew, the version a part counts, honour, fail) names its owner and token and is refused, in
the same transaction, once the lease ran out or another claim took the batch: a run that
stalled past its lease can never honour or fail what another run now holds.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    DataError,
    IntegrityError,
    NoSuchModuleError,
    ProgrammingError,
)

from oblivio.errors import OblivioError
from oblivio.home import oblivio_home
from oblivio.ledger import history, schema
from oblivio.ledger.tables import STATES, batches, copies, events, items, parts, requests

LEDGER_ENV = "OBLIVIO_LEDGER_URL"
#: the schema owner's URL, for ``oblivio ledger upgrade`` where the steps' role may not run DDL
ADMIN_ENV = "OBLIVIO_LEDGER_ADMIN_URL"
KINDS = ("ids", "classes")
#: values per IN (...) list: PostgreSQL takes at most 65535 parameters a statement
CHUNK = 5000


class LeaseLost(OblivioError):
    """The batch went to another run, its lease ran out, or it finished: this run must leave it
    alone."""


def ledger_url() -> str:
    """``OBLIVIO_LEDGER_URL``, else a SQLite file under the oblivio home."""
    return os.environ.get(LEDGER_ENV) or f"sqlite:///{oblivio_home() / 'ledger.db'}"


def items_sha256(values: Iterable[str]) -> str:
    """The digest a request is known by: SHA-256 of its sorted items, one per line (for sample
    ids, the same as ``oblivio.data.sample_ids.ids_sha256``)."""
    return hashlib.sha256("".join(f"{v}\n" for v in sorted(values)).encode()).hexdigest()


def check_ticket(ticket: str | None) -> None:
    """A ticket is someone's reference: an empty one would name no request."""
    if ticket is not None and not ticket.strip():
        raise OblivioError("--ticket is empty: give your reference, or leave it out")


def _aware(moment: datetime | None) -> datetime | None:
    return history.aware(moment) if moment is not None else None


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start:start + CHUNK]


@dataclass(frozen=True)
class Request:
    id: str
    model_name: str
    kind: str
    count: int
    sha256: str
    ticket: str | None
    deadline: date | None
    state: str
    attempts: int
    last_error: str | None
    batch_id: str | None
    version: str | None
    submitted_at: datetime
    honoured_at: datetime | None
    solo: bool = False

    def overdue(self, today: date) -> bool:
        return (self.deadline is not None and self.deadline < today
                and self.state != "honoured")

    def as_dict(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, date) else v)
                for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Claim:
    """Who holds a batch, and under which claim: every write for the batch names both."""

    batch_id: str
    owner: str
    token: int


@dataclass(frozen=True)
class Batch:
    """A claimed batch: what one run honours. ``classes`` are class indices; ``ids`` the
    sample ids of every image request in it; ``claims`` its fencing token."""

    id: str
    model_name: str
    owner: str
    lease_until: datetime
    claims: int
    requests: list[Request] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    @property
    def claim(self) -> Claim:
        return Claim(self.id, self.owner, self.claims)


class Ledger:
    """Requests, batches and their history in one database."""

    def __init__(self, url: str | None = None, migrate: bool = False) -> None:
        """Open the ledger at ``url``; one line unless it is at this code's schema (an empty
        database is created). ``migrate``: open it only to ``upgrade``."""
        self.url = url or ledger_url()
        self.engine = _engine(self.url)
        if migrate:
            return
        with self._begin(write=False) as conn:
            state = schema.standing(conn)
        if state == "empty":  # a new ledger: created once, whoever gets the lock first
            with self._begin() as conn:
                schema.upgrade(conn)
        elif state != "current":
            with self._begin(write=False) as conn:
                schema.require_current(conn, _safe(self.url))

    @contextmanager
    def _begin(self, write: bool = True) -> Iterator[Connection]:
        """One transaction (a write takes the ledger's lock); an unreachable database becomes
        one line naming it."""
        try:
            with self.engine.begin() as conn:
                if write:
                    schema.lock(conn)
                yield conn
        except DatabaseError as exc:  # unreachable, refused, or no database at all
            if isinstance(exc, (IntegrityError, DataError)) or isinstance(
                    exc, ProgrammingError) and getattr(
                    exc.orig, "sqlstate", None) != "42501":  # insufficient privilege
                raise
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise OblivioError(f"ledger at {_safe(self.url)} is unusable ({reason})") from None

    def upgrade(self) -> tuple[str, str]:
        """Migrate this ledger to the code's schema (``oblivio ledger upgrade``)."""
        with self._begin() as conn:
            return schema.upgrade(conn)

    @staticmethod
    def _now(conn: Connection) -> datetime:
        """The database's clock (PostgreSQL), or this machine's (SQLite is a local file)."""
        if conn.dialect.name == "postgresql":
            return conn.execute(text("SELECT clock_timestamp()")).scalar_one().astimezone(UTC)
        return datetime.now(UTC)

    # intake -------------------------------------------------------------------------------

    def submit(self, model_name: str, kind: str, values: list[str], ticket: str | None = None,
               deadline: date | None = None, *, total_classes: int | None = None,
               forgotten_classes: frozenset[int] = frozenset(),
               met_by: str | None = None, met_evidence: dict | None = None
               ) -> tuple[Request, bool]:
        """Record a pending request naming ``values`` (sample ids, or class indices), in one
        transaction with every check. The same request again (its ticket, or the same items
        while it is live) returns the existing one; returns (request, whether it is new).
        Refused, with nothing recorded, when any item is in another live request, the ticket
        names other items, or (classes) with those pending no class would be left to keep.
        ``met_by``: the champion's version already honours it, so it is honoured at once."""
        if kind not in KINDS:
            raise OblivioError(f"unknown request kind {kind!r}")
        check_ticket(ticket)
        values = sorted(set(values))
        digest = items_sha256(values)
        for attempt in (1, 2):  # a concurrent submit of the same ticket: the second finds it
            try:
                with self._begin() as conn:
                    existing = self._existing(conn, model_name, kind, digest, ticket)
                    if existing is not None:
                        return existing, False
                    if kind == "classes" and total_classes is not None:
                        self._refuse_emptying(conn, model_name, values, total_classes,
                                              forgotten_classes)
                    return self._insert(conn, model_name, kind, values, digest, ticket,
                                        deadline, met_by, met_evidence or {}), True
            except IntegrityError:
                if attempt == 2:
                    raise OblivioError("the ledger refused the request twice (a concurrent "
                                       "intake of the same items): nothing recorded") from None
        raise AssertionError("unreachable")

    def _existing(self, conn: Connection, model_name: str, kind: str, digest: str,
                  ticket: str | None) -> Request | None:
        if ticket is not None:
            row = conn.execute(select(requests).where(requests.c.model_name == model_name,
                                                      requests.c.ticket == ticket)).first()
            if row is None:
                return None
            if (row.kind, row.sha256) != (kind, digest):
                raise OblivioError(f"ticket {ticket} is already request {row.id}, which names "
                                   f"other {row.kind}: nothing recorded")
            return _request(row)
        row = conn.execute(select(requests).where(
            requests.c.model_name == model_name, requests.c.kind == kind,
            requests.c.sha256 == digest, requests.c.state != "failed")
            .order_by(requests.c.submitted_at)).first()
        return _request(row) if row is not None else None

    def _insert(self, conn: Connection, model_name: str, kind: str, values: list[str],
                digest: str, ticket: str | None, deadline: date | None,
                met_by: str | None, met_evidence: dict) -> Request:
        moment = self._now(conn)
        request_id = "req-" + secrets.token_hex(6)
        conn.execute(insert(requests), {
            "id": request_id, "model_name": model_name, "kind": kind, "count": len(values),
            "sha256": digest, "ticket": ticket, "deadline": deadline,
            "state": "pending" if met_by is None else "honoured", "version": met_by,
            "honoured_at": None if met_by is None else moment, "attempts": 0,
            "submitted_at": moment, "solo": False})
        self._insert_items(conn, model_name, kind, values, request_id)
        history.append(conn, moment, model_name, "submitted", request_id, kind=kind,
                       count=len(values), sha256=digest, ticket=ticket,
                       deadline=deadline.isoformat() if deadline else None)
        if met_by is not None:
            history.append(conn, moment, model_name, "honoured", request_id, version=met_by,
                           how="the champion had already forgotten it", **met_evidence)
        return _request(conn.execute(select(requests).where(requests.c.id == request_id)).one())

    @staticmethod
    def _insert_items(conn: Connection, model_name: str, kind: str, values: list[str],
                      request_id: str) -> None:
        """Insert the request's items; any already in a live request (the key refuses it) is
        one error naming the first and how many, and the caller's transaction records
        nothing. Inserting first and reading what went in is one index probe per item on
        either database, however large the request."""
        dialect = conn.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert
        statement = upsert(items).on_conflict_do_nothing().returning(items.c.item)
        inserted: set[str] = set()
        for chunk in _chunks(values):
            inserted.update(conn.execute(statement, [
                {"model_name": model_name, "kind": kind, "item": v, "request_id": request_id}
                for v in chunk]).scalars())
        if len(inserted) == len(values):
            return
        first = next(v for v in values if v not in inserted)  # values are sorted
        taken = conn.execute(
            select(items.c.item, requests.c.id, requests.c.state, requests.c.version)
            .join(requests, items.c.request_id == requests.c.id)
            .where(items.c.model_name == model_name, items.c.kind == kind,
                   items.c.item == first)).one()
        what = "class" if kind == "classes" else "sample"
        where = (f"already forgotten by {model_name} version {taken.version} (request "
                 f"{taken.id})" if taken.state == "honoured"
                 else f"already in request {taken.id} ({taken.state})")
        count = len(values) - len(inserted)
        others = f" and {count - 1} more" if count > 1 else ""
        raise OblivioError(f"{what} {taken.item}{others} {where}: nothing recorded")

    @staticmethod
    def _refuse_emptying(conn: Connection, model_name: str, values: list[str], total: int,
                         forgotten: frozenset[int]) -> None:
        queued = {int(v) for v in conn.execute(
            select(items.c.item).join(requests, items.c.request_id == requests.c.id).where(
                items.c.model_name == model_name, items.c.kind == "classes",
                requests.c.state.in_(("pending", "claimed")))).scalars()}
        if len({int(v) for v in values} | forgotten | queued) >= total:
            raise OblivioError("with the classes already forgotten or pending, nothing would be "
                               "left to keep: nothing recorded")

    # reading ------------------------------------------------------------------------------

    def get(self, request_id: str) -> Request:
        with self._begin(write=False) as conn:
            row = conn.execute(select(requests).where(requests.c.id == request_id)).first()
        if row is None:
            raise OblivioError(f"no request {request_id!r} in the ledger")
        return _request(row)

    def find(self, state: str | None = None, model_name: str | None = None,
             ticket: str | None = None, overdue: date | None = None,
             batch_id: str | None = None) -> list[Request]:
        """Requests, oldest first, optionally of one state, model, ticket or batch, or not
        honoured by their deadline when ``overdue`` is today's date."""
        if state is not None and state not in STATES:
            raise OblivioError(f"unknown state {state!r} (one of {', '.join(STATES)})")
        query = select(requests).order_by(requests.c.submitted_at, requests.c.id)
        for column, value in ((requests.c.state, state), (requests.c.model_name, model_name),
                              (requests.c.ticket, ticket), (requests.c.batch_id, batch_id)):
            if value is not None:
                query = query.where(column == value)
        if overdue is not None:
            query = query.where(requests.c.deadline < overdue, requests.c.state != "honoured")
        with self._begin(write=False) as conn:
            return [_request(r) for r in conn.execute(query)]

    def items_of(self, request_id: str) -> list[str]:
        with self._begin(write=False) as conn:
            return sorted(conn.execute(select(items.c.item).where(
                items.c.request_id == request_id)).scalars())

    def names_any(self, model_name: str, kind: str, values: list[str]) -> bool:
        """Whether any of ``values`` is an item of a request for the model."""
        with self._begin(write=False) as conn:
            return any(conn.execute(select(items.c.item).where(
                items.c.model_name == model_name, items.c.kind == kind,
                items.c.item.in_(chunk)).limit(1)).first() for chunk in _chunks(values))

    def requests_naming(self, model_name: str, kind: str, item: str) -> list[Request]:
        """The requests (at most one live) that name this image or class."""
        with self._begin(write=False) as conn:
            rows = conn.execute(select(requests).join(
                items, items.c.request_id == requests.c.id).where(
                items.c.model_name == model_name, items.c.kind == kind, items.c.item == item))
            return [_request(r) for r in rows]

    def events(self, model_name: str | None = None, request_id: str | None = None) -> list:
        """The history, oldest first (all of it, or one model's or one request's)."""
        query = select(events).order_by(events.c.seq)
        if model_name is not None:
            query = query.where(events.c.model_name == model_name)
        if request_id is not None:
            query = query.where(events.c.request_id == request_id)
        with self._begin(write=False) as conn:
            return conn.execute(query).all()

    def record(self, model_name: str, event_name: str, request_id: str | None = None,
               **detail) -> None:
        """Append an event that is not a ledger change (a champion move seen, a purge)."""
        with self._begin() as conn:
            history.append(conn, self._now(conn), model_name, event_name, request_id,
                           **detail)

    # batches ------------------------------------------------------------------------------

    def claim(self, model_name: str, owner: str, lease: timedelta,
              max_claims: int | None = None) -> Batch | None:
        """Take the oldest batch whose lease expired (its run died), or claim every pending
        request of the model into a new batch; None when there is nothing to do. A request
        split off a failed batch is claimed alone, so it fails alone. A batch whose runs died
        ``max_claims`` times is failed instead of taken over again."""
        with self._begin() as conn:
            moment = self._now(conn)
            while True:
                stale = conn.execute(
                    select(batches.c.id, batches.c.claims).where(
                        batches.c.model_name == model_name, batches.c.state == "claimed",
                        batches.c.lease_until < moment)
                    .order_by(batches.c.created_at).limit(1)).first()
                if stale is None:
                    break
                if max_claims is not None and stale.claims >= max_claims:
                    self._fail(conn, stale.id, None, f"its run died {stale.claims} time(s) "
                               "before finishing", 1, moment)
                    continue
                conn.execute(update(batches).where(batches.c.id == stale.id).values(
                    owner=owner, lease_until=moment + lease, claims=batches.c.claims + 1))
                history.append(conn, moment, model_name, "taken_over", batch_id=stale.id,
                               owner=owner, token=stale.claims + 1)
                return self._batch(conn, stale.id)
            pending = conn.execute(
                select(requests.c.id, requests.c.solo).where(
                    requests.c.model_name == model_name, requests.c.state == "pending")
                .order_by(requests.c.submitted_at, requests.c.id)).all()
            if not pending:
                return None
            solo = [r.id for r in pending if r.solo]
            chosen = solo[:1] or [r.id for r in pending]
            batch_id = "batch-" + secrets.token_hex(8)
            conn.execute(insert(batches), {
                "id": batch_id, "model_name": model_name, "state": "claimed", "owner": owner,
                "lease_until": moment + lease, "claims": 1, "created_at": moment})
            conn.execute(update(requests).where(requests.c.id.in_(chosen))
                         .values(state="claimed", batch_id=batch_id,
                                 attempts=requests.c.attempts + 1))
            for request_id in chosen:
                history.append(conn, moment, model_name, "claimed", request_id, batch_id,
                               owner=owner, token=1)
            return self._batch(conn, batch_id)

    def _fence(self, conn: Connection, claim: Claim, moment: datetime):
        """The batch's row, when ``claim`` still holds it; otherwise LeaseLost, naming why."""
        row = conn.execute(select(batches).where(batches.c.id == claim.batch_id)).first()
        if row is None:
            raise OblivioError(f"no batch {claim.batch_id!r} in the ledger")
        if row.state != "claimed":
            why = row.state
        elif row.owner != claim.owner or row.claims != claim.token:
            why = f"taken over by {row.owner}, claim {row.claims}"
        elif _aware(row.lease_until) < moment:
            why = f"its lease ran out at {_aware(row.lease_until):%H:%M:%S} UTC"
        else:
            return row
        raise LeaseLost(f"batch {claim.batch_id} is no longer this run's ({why}): stopping "
                        "without writing")

    def renew(self, claim: Claim, lease: timedelta) -> datetime:
        """Extend the lease of a batch this claim still holds, before (and while) work that may
        outlast it. Returns the new end."""
        with self._begin() as conn:
            moment = self._now(conn)
            self._fence(conn, claim, moment)
            conn.execute(update(batches).where(batches.c.id == claim.batch_id)
                         .values(lease_until=moment + lease))
        return moment + lease

    def _batch(self, conn: Connection, batch_id: str) -> Batch:
        row = conn.execute(select(batches).where(batches.c.id == batch_id)).one()
        reqs = [_request(r) for r in conn.execute(
            select(requests).where(requests.c.batch_id == batch_id,
                                   requests.c.state == "claimed")
            .order_by(requests.c.submitted_at, requests.c.id))]
        taken = conn.execute(select(items.c.kind, items.c.item).where(
            items.c.request_id.in_([r.id for r in reqs]))).all()
        return Batch(row.id, row.model_name, row.owner, _aware(row.lease_until), row.claims,
                     reqs, sorted(int(i) for k, i in taken if k == "classes"),
                     sorted(i for k, i in taken if k == "ids"))

    def record_ids(self, claim: Claim, ids_sha256: str, ids_uri: str | None = None) -> None:
        """Note the digest of the batch's image set, as its run forgets it, and where the
        claim wrote it (a copy of the ids, erased once the batch is over)."""
        with self._begin() as conn:
            self._fence(conn, claim, self._now(conn))
            conn.execute(update(batches).where(batches.c.id == claim.batch_id)
                         .values(ids_sha256=ids_sha256, ids_uri=ids_uri))

    def unerased_ids_files(self, model_name: str) -> list[tuple[str, str]]:
        """(batch, uri) of every finished batch whose ids file is not erased yet."""
        with self._begin(write=False) as conn:
            return [(r.id, r.ids_uri) for r in conn.execute(
                select(batches.c.id, batches.c.ids_uri).where(
                    batches.c.model_name == model_name, batches.c.state != "claimed",
                    batches.c.ids_uri.is_not(None), batches.c.ids_erased_at.is_(None))
                .order_by(batches.c.created_at))]

    def erased_ids_file(self, batch_id: str, receipt: dict) -> None:
        """Record that the batch's ids file was erased, with the receipt, as one change."""
        with self._begin() as conn:
            moment = self._now(conn)
            model = conn.execute(update(batches).where(batches.c.id == batch_id)
                                 .values(ids_erased_at=moment)
                                 .returning(batches.c.model_name)).scalar_one()
            history.append(conn, moment, model, "purged", batch_id=batch_id,
                           what="batch ids file", **receipt)

    def record_copy(self, claim: Claim, what: str, uri: str) -> None:
        """Record where the claim's run writes copies of the batch's data (its pipeline-root
        folder), to erase once the batch is over; recording it again changes nothing."""
        with self._begin() as conn:
            moment = self._now(conn)
            self._fence(conn, claim, moment)
            known = conn.execute(select(copies.c.uri).where(
                copies.c.batch_id == claim.batch_id, copies.c.uri == uri)).first()
            if known is None:
                conn.execute(insert(copies).values(batch_id=claim.batch_id, uri=uri, what=what,
                                                   recorded_at=moment))

    def unerased_copies(self, model_name: str) -> list[tuple[str, str, str]]:
        """(batch, what, uri) of every copy a finished batch's runs left, not erased yet."""
        with self._begin(write=False) as conn:
            return [tuple(r) for r in conn.execute(
                select(copies.c.batch_id, copies.c.what, copies.c.uri)
                .join(batches, batches.c.id == copies.c.batch_id)
                .where(batches.c.model_name == model_name, batches.c.state != "claimed",
                       copies.c.erased_at.is_(None))
                .order_by(copies.c.recorded_at, copies.c.uri))]

    def erased_copy(self, batch_id: str, uri: str, what: str, receipt: dict) -> None:
        """Record that a copy was erased, with the receipt, as one change."""
        with self._begin() as conn:
            moment = self._now(conn)
            conn.execute(update(copies).where(copies.c.batch_id == batch_id, copies.c.uri == uri)
                         .values(erased_at=moment))
            model = conn.execute(select(batches.c.model_name).where(
                batches.c.id == batch_id)).scalar_one()
            history.append(conn, moment, model, "purged", batch_id=batch_id, what=what,
                           **receipt)

    def count_version(self, claim: Claim, kind: str, version: str) -> str:
        """The one version a part of the batch counts: the first recorded, under a live claim.
        A second version for the same part (a run that lost its lease registered it too)
        is never counted; returns the counted one."""
        with self._begin() as conn:
            moment = self._now(conn)
            self._fence(conn, claim, moment)
            counted = conn.execute(select(parts.c.version).where(
                parts.c.batch_id == claim.batch_id, parts.c.kind == kind)).scalar()
            if counted is not None:
                return counted
            conn.execute(insert(parts), {"batch_id": claim.batch_id, "kind": kind,
                                         "version": version, "token": claim.token,
                                         "recorded_at": moment})
            model = conn.execute(select(batches.c.model_name).where(
                batches.c.id == claim.batch_id)).scalar_one()
            history.append(conn, moment, model, "registered", batch_id=claim.batch_id,
                           kind=kind, version=version, token=claim.token)
            return version

    def counted_version(self, batch_id: str, kind: str) -> str | None:
        with self._begin(write=False) as conn:
            return conn.execute(select(parts.c.version).where(
                parts.c.batch_id == batch_id, parts.c.kind == kind)).scalar()

    def honour(self, claim: Claim, kind: str, version: str, *,
               request_ids: list[str] | None = None, **evidence) -> int:
        """Mark the batch's claimed requests of ``kind`` (or just ``request_ids``) honoured by
        ``version``; the batch is finished once none is left claimed. ``evidence`` (model id,
        weights SHA-256) goes into each request's event. Returns how many it marked."""
        with self._begin() as conn:
            moment = self._now(conn)
            row = self._fence(conn, claim, moment)
            query = select(requests.c.id).where(requests.c.batch_id == claim.batch_id,
                                                requests.c.kind == kind,
                                                requests.c.state == "claimed")
            if request_ids is not None:
                query = query.where(requests.c.id.in_(request_ids))
            chosen = conn.execute(query).scalars().all()
            conn.execute(update(requests).where(requests.c.id.in_(chosen)).values(
                state="honoured", version=version, honoured_at=moment, last_error=None))
            for request_id in chosen:
                history.append(conn, moment, row.model_name, "honoured", request_id,
                               claim.batch_id, version=version, token=claim.token, **evidence)
            versions = [v for v in (row.versions or "").split(",") if v]
            if chosen and version not in versions:
                conn.execute(update(batches).where(batches.c.id == claim.batch_id)
                             .values(versions=",".join([*versions, version])))
            self._finish_if_done(conn, claim.batch_id, moment)
        return len(chosen)

    def fail(self, claim: Claim, reason: str, max_attempts: int,
             kind: str | None = None) -> list[Request]:
        """Give the batch's still-claimed requests (of ``kind``, or all) back with the reason.
        A request alone in its part uses an attempt: pending again, or failed (its items
        released) after ``max_attempts``. Several at once are split off: pending, the attempt
        given back, each to be claimed alone, so only the one at fault fails. Returns them."""
        with self._begin() as conn:
            moment = self._now(conn)
            self._fence(conn, claim, moment)
            return self._fail(conn, claim.batch_id, kind, reason, max_attempts, moment,
                              claim.token)

    def _fail(self, conn: Connection, batch_id: str, kind: str | None, reason: str,
              max_attempts: int, moment: datetime, token: int | None = None) -> list[Request]:
        query = select(requests).where(requests.c.batch_id == batch_id,
                                       requests.c.state == "claimed")
        if kind is not None:
            query = query.where(requests.c.kind == kind)
        claimed = conn.execute(query).all()
        reason = reason[:4000]
        split = len(claimed) > 1
        for row in claimed:
            final = not split and row.attempts >= max_attempts
            state = "failed" if final else "pending"
            conn.execute(update(requests).where(requests.c.id == row.id).values(
                state=state, last_error=reason, solo=split or row.solo,
                attempts=row.attempts - 1 if split else row.attempts))
            if final:
                conn.execute(delete(items).where(items.c.request_id == row.id))
            history.append(conn, moment, row.model_name, "failed" if final else "returned",
                           row.id, batch_id, reason=reason, split=split, token=token)
        if claimed:
            errors = conn.execute(select(batches.c.error).where(
                batches.c.id == batch_id)).scalar()
            conn.execute(update(batches).where(batches.c.id == batch_id).values(
                error="; ".join(filter(None, [errors, reason]))[:4000]))
        self._finish_if_done(conn, batch_id, moment)
        return [_request(r) for r in conn.execute(select(requests).where(
            requests.c.id.in_([r.id for r in claimed])))]

    def claimed_in(self, batch_id: str) -> list[Request]:
        """The batch's requests not yet honoured or given back."""
        with self._begin(write=False) as conn:
            return [_request(r) for r in conn.execute(select(requests).where(
                requests.c.batch_id == batch_id, requests.c.state == "claimed"))]

    @staticmethod
    def _finish_if_done(conn: Connection, batch_id: str, moment: datetime) -> None:
        """Nothing left claimed: the batch is completed, or failed when any part failed."""
        left = conn.execute(select(func.count()).where(
            requests.c.batch_id == batch_id, requests.c.state == "claimed")).scalar_one()
        if left == 0:
            error = conn.execute(select(batches.c.error).where(
                batches.c.id == batch_id)).scalar()
            conn.execute(update(batches).where(batches.c.id == batch_id,
                                               batches.c.state == "claimed")
                         .values(state="failed" if error else "completed",
                                 finished_at=moment))

    def ids_with_sha256(self, sha256: str) -> list[str] | None:
        """The sample ids of an image request, or of a batch's image requests together, whose
        digest is ``sha256``: what a model records of a deletion instead of the ids. None when
        the ledger holds no such ids (or no longer all of them)."""
        image = requests.c.kind == "ids"
        with self._begin(write=False) as conn:
            owners = [select(requests.c.id).where(image, requests.c.id == r) for r in
                      conn.execute(select(requests.c.id).where(
                          image, requests.c.sha256 == sha256)).scalars()]
            owners += [select(requests.c.id).where(image, requests.c.batch_id == b) for b in
                       conn.execute(select(batches.c.id).where(
                           batches.c.ids_sha256 == sha256)).scalars()]
            for owner in owners:
                found = sorted(conn.execute(select(items.c.item).where(
                    items.c.request_id.in_(owner))).scalars())
                if found and items_sha256(found) == sha256:
                    return found
        return None

    def held_batches(self, model_name: str) -> list[dict]:
        """The model's batches claimed under a lease not yet run out: another run's work."""
        with self._begin(write=False) as conn:
            moment = self._now(conn)
            rows = conn.execute(select(batches).where(
                batches.c.model_name == model_name, batches.c.state == "claimed")
                .order_by(batches.c.created_at)).all()
        return [{k: _aware(v) if isinstance(v, datetime) else v
                 for k, v in r._asdict().items()} for r in rows
                if _aware(r.lease_until) > moment]

    def batch_row(self, batch_id: str) -> dict:
        with self._begin(write=False) as conn:
            row = conn.execute(select(batches).where(batches.c.id == batch_id)).first()
        if row is None:
            raise OblivioError(f"no batch {batch_id!r} in the ledger")
        return {k: _aware(v) if isinstance(v, datetime) else v for k, v in row._asdict().items()}


def _request(row) -> Request:
    values = row._asdict()
    for key in ("submitted_at", "honoured_at"):
        values[key] = _aware(values[key])
    values["solo"] = bool(values.get("solo"))
    return Request(**values)


def _safe(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def _engine(url: str) -> Engine:
    """An engine whose SQLite transactions lock the database when they begin, so a claim's
    read and write cannot interleave with another process's."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise OblivioError(f"ledger URL {url!r} is not a database URL (e.g. "
                           "postgresql+psycopg://user@host/db or sqlite:///path)") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise OblivioError(f"ledger URL {_safe(url)}: the ledger runs on PostgreSQL "
                           "(postgresql+psycopg://...) or SQLite (sqlite:///path)")
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, pool_pre_ping=True)
    except NoSuchModuleError:
        raise OblivioError(f"ledger URL {_safe(url)}: no driver for this database") from None
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _no_implicit_begin(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA busy_timeout = 30000")

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    return engine
