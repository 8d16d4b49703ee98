"""Alembic's entry point for the ledger: it runs on the connection (and inside the transaction)
that ``oblivio.ledger.schema`` opened and locked, so a migration and the version check that
led to it are one unit."""

from alembic import context

from oblivio.ledger.schema import VERSION_TABLE

context.configure(connection=context.config.attributes["connection"], target_metadata=None,
                  version_table=VERSION_TABLE, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
