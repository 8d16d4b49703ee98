"""The ledger as it was before schema versions: requests, their items, batches.

A ledger made by oblivio before migrations has exactly these tables; ``oblivio ledger upgrade``
recognises it and records it at this revision instead of creating them again.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("model_name", sa.String(256), nullable=False, index=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("owner", sa.String(256), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claims", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("ids_sha256", sa.String(64)),
        sa.Column("versions", sa.Text),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "requests",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("model_name", sa.String(256), nullable=False, index=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("ticket", sa.String(256), index=True),
        sa.Column("deadline", sa.Date),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("batch_id", sa.String(40), sa.ForeignKey("batches.id")),
        sa.Column("version", sa.String(32)),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("honoured_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "items",
        sa.Column("model_name", sa.String(256), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("item", sa.String(256), primary_key=True),
        sa.Column("request_id", sa.String(40), sa.ForeignKey("requests.id"), nullable=False,
                  index=True),
    )
