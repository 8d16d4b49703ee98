"""The ledger's schema version: Alembic migrations (``migrations/``), checked each time a ledger
is opened. A ledger at the code's revision runs no DDL; an empty database is created once,
under a lock, however many processes open it at the same moment; a ledger older or newer than
the code is one clear line, and ``oblivio ledger upgrade`` migrates an older one.

Every write takes the same lock: SQLite's ``BEGIN IMMEDIATE``, and on PostgreSQL a transaction
advisory lock, so PostgreSQL's READ COMMITTED cannot interleave two ledger changes.
"""

from __future__ import annotations

import functools
from pathlib import Path

from sqlalchemy import Connection, inspect, text

from oblivio.errors import OblivioError

#: not Alembic's default ``alembic_version``: MLflow keeps its own schema there, and the two may
#: share a database
VERSION_TABLE = "oblivio_ledger_version"
BASELINE = "0001"
LOCK_KEY = 0x6F626C76  # "oblv": the ledger's advisory lock on PostgreSQL


def _config(conn: Connection | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = conn
    return config


@functools.cache
def head() -> str:
    """The newest revision of the migrations this code carries (read once per process)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def revision(conn: Connection) -> str | None:
    """The ledger's revision; None for an empty database or one made before revisions."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def lock(conn: Connection) -> None:
    """Serialise this transaction with every other ledger write (SQLite: already, by its
    ``BEGIN IMMEDIATE``)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})


def _known(rev: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(_config()).get_revision(rev) is not None
    except CommandError:
        return False


def standing(conn: Connection) -> str:
    """'current', 'empty', 'unversioned' (made before revisions), 'older' or 'newer'."""
    rev = revision(conn)
    if rev == head():
        return "current"
    if rev is None:
        return "unversioned" if "requests" in inspect(conn).get_table_names() else "empty"
    return "older" if _known(rev) else "newer"


def upgrade(conn: Connection) -> tuple[str, str]:
    """Migrate the ledger to the code's revision, inside the caller's transaction and under the
    ledger's lock. A ledger made before revisions is recorded at the baseline first. Returns
    (what it was: a revision, 'empty' or 'unversioned'; the revision after)."""
    from alembic import command

    lock(conn)
    state, before = standing(conn), revision(conn)
    if state == "newer":
        raise OblivioError(f"the ledger is at schema revision {before}, newer than this oblivio "
                           f"({head()}): upgrade oblivio")
    if state == "current":
        return before, before
    config = _config(conn)
    if state == "unversioned":
        command.stamp(config, BASELINE)
    try:
        command.upgrade(config, "head")
    except RuntimeError as exc:  # a migration's own refusal, e.g. a ticket used twice
        raise OblivioError(f"ledger upgrade refused: {exc}") from None
    return before or state, head()


def require_current(conn: Connection, where: str) -> None:
    """One line unless the ledger is at the code's revision."""
    state = standing(conn)
    if state == "current":
        return
    rev = revision(conn)
    if state == "newer":
        raise OblivioError(f"ledger at {where} is at schema revision {rev}, newer than this "
                           f"oblivio ({head()}): upgrade oblivio")
    found = "made before schema revisions" if state == "unversioned" else f"at revision {rev}"
    raise OblivioError(f"ledger at {where} is {found}, older than this oblivio ({head()}): "
                       "run `oblivio ledger upgrade`")
