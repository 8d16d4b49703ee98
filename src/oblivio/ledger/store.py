"""The ledger of deletion requests: SQLite under the oblivio home by default, PostgreSQL (or any
SQLAlchemy URL) from ``OBLIVIO_LEDGER_URL`` on a cluster.

Every change is one transaction, and each is safe against a second process doing the same:
SQLite transactions take the write lock when they begin (``BEGIN IMMEDIATE``); on PostgreSQL
claims lock the rows they take (``FOR UPDATE SKIP LOCKED``), and the ``items`` key refuses a
second request for one image. A batch is claimed under a lease: a run that dies leaves it to
expire, and the next claim takes the same batch over (same id, same requests), so a version
registered under that id before the crash is found again instead of made twice.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, delete, event, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError

from oblivio.errors import OblivioError
from oblivio.ledger.tables import STATES, batches, items, metadata, requests

LEDGER_ENV = "OBLIVIO_LEDGER_URL"


class LeaseLost(OblivioError):
    """The batch went to another run (or finished): this run must leave it alone."""


def ledger_url() -> str:
    """``OBLIVIO_LEDGER_URL``, else a SQLite file under the oblivio home."""
    from oblivio.tracking.store import oblivio_home

    return os.environ.get(LEDGER_ENV) or f"sqlite:///{oblivio_home() / 'ledger.db'}"


def now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they were stored in UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


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

    def as_dict(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, date) else v)
                for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Batch:
    """A claimed batch: what one run honours. ``classes`` are class indices; ``ids`` the
    sample ids of every image request in it."""

    id: str
    model_name: str
    owner: str
    lease_until: datetime
    claims: int
    requests: list[Request] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)


class Ledger:
    """Requests and batches in one database (created on first use)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or ledger_url()
        self.engine = _engine(self.url)
        with self._begin() as conn:
            metadata.create_all(conn)

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """One transaction; an unreachable database becomes one line naming it."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise OblivioError(f"ledger at {_safe(self.url)} is unusable ({reason})") from None

    # intake -------------------------------------------------------------------------------

    def submit(self, model_name: str, kind: str, values: list[str], sha256: str,
               ticket: str | None = None, deadline: date | None = None) -> Request:
        """Record a pending request naming ``values`` (sample ids, or class indices). Refused,
        with nothing recorded, when any of them is already in a pending, claimed or honoured
        request for the model."""
        if kind not in ("ids", "classes"):
            raise OblivioError(f"unknown request kind {kind!r}")
        request_id = "req-" + secrets.token_hex(6)
        row = {"id": request_id, "model_name": model_name, "kind": kind, "count": len(values),
               "sha256": sha256, "ticket": ticket, "deadline": deadline, "state": "pending",
               "attempts": 0, "submitted_at": now()}
        try:
            with self._begin() as conn:
                self._refuse_known(conn, model_name, kind, values)
                conn.execute(insert(requests), row)
                conn.execute(insert(items), [{"model_name": model_name, "kind": kind,
                                              "item": v, "request_id": request_id}
                                             for v in values])
        except IntegrityError:  # a request for the same image committed in between
            with self._begin() as conn:
                self._refuse_known(conn, model_name, kind, values)
            raise
        return self.get(request_id)

    def _refuse_known(self, conn: Connection, model_name: str, kind: str,
                      values: list[str]) -> None:
        taken = conn.execute(
            select(items.c.item, requests.c.id, requests.c.state, requests.c.version)
            .join(requests, items.c.request_id == requests.c.id)
            .where(items.c.model_name == model_name, items.c.kind == kind,
                   items.c.item.in_(values))).first()
        if taken is None:
            return
        what = "class" if kind == "classes" else "sample"
        count = conn.execute(select(items.c.item).where(
            items.c.model_name == model_name, items.c.kind == kind,
            items.c.item.in_(values))).all()
        where = (f"already forgotten by {model_name} version {taken.version} (request "
                 f"{taken.id})" if taken.state == "honoured"
                 else f"already in request {taken.id} ({taken.state})")
        others = f" and {len(count) - 1} more" if len(count) > 1 else ""
        raise OblivioError(f"{what} {taken.item}{others} {where}: nothing recorded")

    def get(self, request_id: str) -> Request:
        with self._begin() as conn:
            row = conn.execute(select(requests).where(requests.c.id == request_id)).first()
        if row is None:
            raise OblivioError(f"no request {request_id!r} in the ledger")
        return _request(row)

    def find(self, state: str | None = None, model_name: str | None = None,
             ticket: str | None = None) -> list[Request]:
        """Requests, oldest first, optionally of one state, model or ticket."""
        if state is not None and state not in STATES:
            raise OblivioError(f"unknown state {state!r} (one of {', '.join(STATES)})")
        query = select(requests).order_by(requests.c.submitted_at, requests.c.id)
        for column, value in ((requests.c.state, state), (requests.c.model_name, model_name),
                              (requests.c.ticket, ticket)):
            if value is not None:
                query = query.where(column == value)
        with self._begin() as conn:
            return [_request(r) for r in conn.execute(query)]

    def items_of(self, request_id: str) -> list[str]:
        with self._begin() as conn:
            return sorted(conn.execute(select(items.c.item).where(
                items.c.request_id == request_id)).scalars())

    def requests_naming(self, model_name: str, kind: str, item: str) -> list[Request]:
        """The requests (at most one live) that name this image or class."""
        with self._begin() as conn:
            rows = conn.execute(select(requests).join(
                items, items.c.request_id == requests.c.id).where(
                items.c.model_name == model_name, items.c.kind == kind, items.c.item == item))
            return [_request(r) for r in rows]

    # batches ------------------------------------------------------------------------------

    def claim(self, model_name: str, owner: str, lease: timedelta,
              max_claims: int | None = None) -> Batch | None:
        """Take the oldest batch whose lease expired (its run died), or claim every pending
        request of the model into a new batch; None when there is nothing to do. A batch
        whose runs died ``max_claims`` times is failed instead of taken over again."""
        moment = now()
        with self._begin() as conn:
            while True:
                stale = conn.execute(
                    select(batches.c.id, batches.c.claims).where(
                        batches.c.model_name == model_name, batches.c.state == "claimed",
                        batches.c.lease_until < moment)
                    .order_by(batches.c.created_at).limit(1)
                    .with_for_update(skip_locked=True)).first()
                if stale is None:
                    break
                if max_claims is not None and stale.claims >= max_claims:
                    self._fail(conn, stale.id, f"its run died {stale.claims} time(s) before "
                               "finishing", 1, moment)
                    continue
                conn.execute(update(batches).where(batches.c.id == stale.id).values(
                    owner=owner, lease_until=moment + lease, claims=batches.c.claims + 1))
                return self._batch(conn, stale.id)
            pending = conn.execute(
                select(requests.c.id).where(requests.c.model_name == model_name,
                                            requests.c.state == "pending")
                .with_for_update(skip_locked=True)).scalars().all()
            if not pending:
                return None
            batch_id = "batch-" + secrets.token_hex(8)
            conn.execute(insert(batches), {
                "id": batch_id, "model_name": model_name, "state": "claimed", "owner": owner,
                "lease_until": moment + lease, "claims": 1, "created_at": moment})
            conn.execute(update(requests).where(requests.c.id.in_(pending),
                                                requests.c.state == "pending")
                         .values(state="claimed", batch_id=batch_id,
                                 attempts=requests.c.attempts + 1))
            return self._batch(conn, batch_id)

    def renew(self, batch_id: str, owner: str, lease: timedelta) -> datetime:
        """Extend the lease of a batch this owner still holds, before work that may outlast it;
        refuse (one line) when the lease ran out and another run took the batch over, or the
        batch is finished, so two runs never work on one batch. Returns the new end."""
        moment = now()
        with self._begin() as conn:
            row = conn.execute(select(batches).where(batches.c.id == batch_id)
                               .with_for_update()).first()
            if row is None:
                raise OblivioError(f"no batch {batch_id!r} in the ledger")
            if row.state != "claimed" or row.owner != owner:
                holder = row.state if row.state != "claimed" else f"taken over by {row.owner}"
                raise LeaseLost(f"batch {batch_id} is no longer this run's ({holder}): "
                                "stopping without running it")
            conn.execute(update(batches).where(batches.c.id == batch_id)
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

    def record_run(self, batch_id: str, ids_sha256: str | None = None,
                   version: str | None = None) -> None:
        """Note what a batch's run did so far: its image set's digest, a version it made."""
        with self._begin() as conn:
            row = conn.execute(select(batches).where(batches.c.id == batch_id)).one()
            versions = [v for v in (row.versions or "").split(",") if v]
            if version is not None and version not in versions:
                versions.append(version)
            conn.execute(update(batches).where(batches.c.id == batch_id).values(
                ids_sha256=ids_sha256 or row.ids_sha256, versions=",".join(versions) or None))

    def honour(self, batch_id: str, kind: str, version: str) -> int:
        """Mark the batch's claimed requests of ``kind`` honoured by ``version``; the batch is
        complete once none is left claimed. Idempotent. Returns how many it marked."""
        moment = now()
        with self._begin() as conn:
            done = conn.execute(update(requests).where(
                requests.c.batch_id == batch_id, requests.c.kind == kind,
                requests.c.state == "claimed").values(
                state="honoured", version=version, honoured_at=moment, last_error=None)).rowcount
            self._finish_if_done(conn, batch_id, moment, "completed", None)
        return done

    def fail(self, batch_id: str, reason: str, max_attempts: int) -> list[Request]:
        """Give the batch's still-claimed requests back: pending again, or failed (their items
        released for a new request) once they had ``max_attempts``. Returns them."""
        with self._begin() as conn:
            return self._fail(conn, batch_id, reason, max_attempts, now())

    def _fail(self, conn: Connection, batch_id: str, reason: str, max_attempts: int,
              moment: datetime) -> list[Request]:
        claimed = conn.execute(select(requests).where(
            requests.c.batch_id == batch_id, requests.c.state == "claimed")).all()
        for row in claimed:
            final = row.attempts >= max_attempts
            conn.execute(update(requests).where(requests.c.id == row.id).values(
                state="failed" if final else "pending", last_error=reason[:4000]))
            if final:
                conn.execute(delete(items).where(items.c.request_id == row.id))
        self._finish_if_done(conn, batch_id, moment, "failed", reason[:4000])
        return [_request(r) for r in conn.execute(select(requests).where(
            requests.c.id.in_([r.id for r in claimed])))]

    def claimed_in(self, batch_id: str) -> list[Request]:
        """The batch's requests not yet honoured or given back."""
        with self._begin() as conn:
            return [_request(r) for r in conn.execute(select(requests).where(
                requests.c.batch_id == batch_id, requests.c.state == "claimed"))]

    @staticmethod
    def _finish_if_done(conn: Connection, batch_id: str, moment: datetime, state: str,
                        error: str | None) -> None:
        left = conn.execute(select(requests.c.id).where(
            requests.c.batch_id == batch_id, requests.c.state == "claimed")).first()
        if left is None:
            conn.execute(update(batches).where(batches.c.id == batch_id,
                                               batches.c.state == "claimed")
                         .values(state=state, finished_at=moment, error=error))

    def batch_row(self, batch_id: str) -> dict:
        with self._begin() as conn:
            row = conn.execute(select(batches).where(batches.c.id == batch_id)).first()
        if row is None:
            raise OblivioError(f"no batch {batch_id!r} in the ledger")
        return {k: _aware(v) if isinstance(v, datetime) else v for k, v in row._asdict().items()}


def _request(row) -> Request:
    values = row._asdict()
    for key in ("submitted_at", "honoured_at"):
        values[key] = _aware(values[key])
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
