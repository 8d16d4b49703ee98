"""The ledger's schema on SQLite and a real PostgreSQL server: Alembic revisions checked on
open (one line for a ledger older or newer than the code), ``oblivio ledger upgrade`` for a
ledger made before revisions, no DDL once a ledger is current, and many processes opening a
new ledger at the same moment."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, event, text
from typer.testing import CliRunner

from oblivio.cli import app
from oblivio.errors import OblivioError
from oblivio.ledger import schema
from oblivio.ledger.store import Ledger, items_sha256

runner = CliRunner()


def _open_and_submit(url: str, barrier, index: int) -> None:
    barrier.wait()
    Ledger(url).submit("m", "ids", [f"train-{index}"])


@pytest.mark.parametrize("trial", range(3))
def test_many_processes_open_a_new_ledger_at_once(ledger_url: str, trial: int) -> None:
    context = multiprocessing.get_context("fork")  # the test's imports, without their cost
    barrier = context.Barrier(8)
    processes = [context.Process(target=_open_and_submit, args=(ledger_url, barrier, i))
                 for i in range(8)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
    assert [p.exitcode for p in processes] == [0] * 8
    assert len(Ledger(ledger_url).find()) == 8


def _old_ledger(url: str) -> None:
    """A ledger as oblivio wrote it before revisions: the baseline tables, one request, no
    version table."""
    from alembic import command

    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(schema._config(conn), schema.BASELINE)
        conn.execute(text(f"DROP TABLE {schema.VERSION_TABLE}"))
        conn.execute(text(
            "INSERT INTO requests (id, model_name, kind, count, sha256, ticket, state, "
            "attempts, submitted_at) VALUES ('req-old', 'm', 'classes', 1, :digest, 'T-1', "
            "'pending', 0, :at)"), {"digest": items_sha256(["3"]), "at": datetime.now(UTC)})
        conn.execute(text("INSERT INTO items VALUES ('m', 'classes', '3', 'req-old')"))
    engine.dispose()


def test_an_older_ledger_is_one_line_until_upgraded(
        ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _old_ledger(ledger_url)
    with pytest.raises(OblivioError, match=r"^ledger at .+ is made before schema revisions, "
                                           r"older than this oblivio \(\d+\): run `oblivio "
                                           r"ledger upgrade`$"):
        Ledger(ledger_url)
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", ledger_url)
    result = runner.invoke(app, ["ledger", "upgrade"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"ledger at schema revision {schema.head()} (was unversioned)"
    ledger = Ledger(ledger_url)
    old = ledger.get("req-old")
    assert (old.state, old.ticket, old.solo, ledger.items_of(old.id)) == (
        "pending", "T-1", False, ["3"])
    assert ledger.submit("m", "classes", ["3"]) == (old, False)
    again = runner.invoke(app, ["ledger", "upgrade"])
    assert again.stdout.strip() == f"ledger at schema revision {schema.head()} already"


def test_a_ledger_at_another_revision_is_one_line(ledger_url: str) -> None:
    Ledger(ledger_url)
    engine = create_engine(ledger_url)
    for rev, words in (("0001", r"is at revision 0001, older than this oblivio"),
                       ("9999", r"is at schema revision 9999, newer than this oblivio \(\d+\): "
                                r"upgrade oblivio")):
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE {schema.VERSION_TABLE} SET version_num = :r"), {"r": rev})
        with pytest.raises(OblivioError, match=words):
            Ledger(ledger_url)
    engine.dispose()


def test_an_upgrade_that_would_break_a_rule_is_refused(ledger_url: str) -> None:
    _old_ledger(ledger_url)
    engine = create_engine(ledger_url)
    with engine.begin() as conn:  # two requests under one ticket: no longer allowed
        conn.execute(text("INSERT INTO requests (id, model_name, kind, count, sha256, ticket, "
                          "state, attempts, submitted_at) VALUES ('req-two', 'm', 'ids', 1, "
                          "'e', 'T-1', 'pending', 0, :at)"), {"at": datetime.now(UTC)})
    engine.dispose()
    with pytest.raises(OblivioError, match=r"ledger upgrade refused: ticket T-1 of m names "
                                           "several requests"):
        Ledger(ledger_url, migrate=True).upgrade()
    with pytest.raises(OblivioError, match="made before schema revisions"):  # unchanged
        Ledger(ledger_url)


def test_a_current_ledger_runs_no_ddl(ledger_url: str) -> None:
    from datetime import timedelta

    from sqlalchemy import Engine

    Ledger(ledger_url)  # created
    statements: list[str] = []

    def seen(conn, cursor, statement: str, *rest) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        ledger = Ledger(ledger_url)  # opening it again checks the revision: reads only
        ledger.submit("m", "ids", ["train-1"])
        batch = ledger.claim("m", "run", timedelta(hours=1))
        ledger.honour(batch.claim, "ids", "2")
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert statements
    ddl = [s for s in statements if s.lstrip().upper().startswith(("CREATE", "ALTER", "DROP"))]
    assert ddl == []


#: what docs/deploy.md tells a PostgreSQL operator to grant the steps' role
STEPS_GRANTS = """
GRANT USAGE ON SCHEMA public TO oblivio_steps;
GRANT SELECT, INSERT, UPDATE, DELETE ON requests, items, batches, parts TO oblivio_steps;
GRANT SELECT, INSERT ON events TO oblivio_steps;
GRANT SELECT ON oblivio_ledger_version TO oblivio_steps;
"""


def test_the_steps_role_appends_history_but_cannot_rewrite_it(
        postgres: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL the schema's owner migrates (OBLIVIO_LEDGER_ADMIN_URL) and the steps run
    as a role granted as docs/deploy.md says: the whole batch protocol works, and an UPDATE or
    DELETE of the history is refused by the database itself."""
    from datetime import timedelta

    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE ROLE oblivio_steps LOGIN"))
        conn.execute(text("CREATE DATABASE ledger_grants"))
    admin.dispose()
    owner_url = postgres.rsplit("/", 1)[0] + "/ledger_grants"
    steps_url = owner_url.replace("oblivio@", "oblivio_steps@")
    with pytest.raises(OblivioError, match=r"^ledger at .+ is unusable \(permission denied"):
        Ledger(steps_url)  # an empty ledger: the steps' role may not create it
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", steps_url)
    monkeypatch.setenv("OBLIVIO_LEDGER_ADMIN_URL", owner_url)
    result = runner.invoke(app, ["ledger", "upgrade"])
    assert result.exit_code == 0, result.output
    owner = create_engine(owner_url)
    with owner.begin() as conn:
        conn.execute(text(STEPS_GRANTS))
    ledger = Ledger(steps_url)
    request, _ = ledger.submit("m", "ids", ["train-1"])
    batch = ledger.claim("m", "run", timedelta(hours=1))
    ledger.count_version(batch.claim, "ids", "2")
    ledger.honour(batch.claim, "ids", "2")
    assert ledger.get(request.id).state == "honoured"
    for statement in ("UPDATE events SET detail = '{}'", "DELETE FROM events"):
        with pytest.raises(Exception, match="permission denied for table events"):
            with ledger.engine.begin() as conn:
                conn.execute(text(statement))
    assert len(ledger.events()) == 4
    owner.dispose()
