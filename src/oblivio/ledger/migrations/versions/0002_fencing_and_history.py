"""Fenced batches and a tamper-evident history: the version each part of a batch counts
(one per part, recorded under the claim's fencing token), a unique ticket per model, requests
split off to fail alone, where a batch's ids file is (to erase it), and the hash-chained event
log.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    twice = bind.execute(sa.text(
        "SELECT model_name, ticket FROM requests WHERE ticket IS NOT NULL "
        "GROUP BY model_name, ticket HAVING COUNT(*) > 1")).first()
    if twice is not None:
        raise RuntimeError(f"ticket {twice.ticket} of {twice.model_name} names several requests: "
                           "give each its own ticket before upgrading")
    with op.batch_alter_table("requests") as table:
        table.add_column(sa.Column("solo", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
        table.create_unique_constraint("uq_requests_model_ticket", ["model_name", "ticket"])
    with op.batch_alter_table("batches") as table:
        table.add_column(sa.Column("ids_uri", sa.Text))
        table.add_column(sa.Column("ids_erased_at", sa.DateTime(timezone=True)))
    op.create_table(
        "parts",
        sa.Column("batch_id", sa.String(40), sa.ForeignKey("batches.id"), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("token", sa.Integer, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False, index=True),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(40), index=True),
        sa.Column("batch_id", sa.String(40)),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
