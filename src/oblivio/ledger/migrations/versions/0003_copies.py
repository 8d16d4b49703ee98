"""Where a batch's runs left copies of what they worked on (a Kubeflow run's pipeline-root
folder: the parent's and new weights, statistics, the request's ids), so that they are erased
once the batch is over, even those of a run that died before its last step.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "copies",
        sa.Column("batch_id", sa.String(40), sa.ForeignKey("batches.id"), primary_key=True),
        sa.Column("uri", sa.String(1024), primary_key=True),
        sa.Column("what", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("copies")
