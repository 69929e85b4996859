"""expand: tasks.source with a server default, backfilled, and an index (the previous image's
inserts get the default; its reads ignore the column)

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
    op.add_column(
        "tasks",
        sa.Column("source", sa.Text(), server_default="api", nullable=False),
        schema="backend",
    )
    op.create_index("ix_tasks_source", "tasks", ["source"], schema="backend")


def downgrade() -> None:
    op.drop_index("ix_tasks_source", table_name="tasks", schema="backend")
    op.drop_column("tasks", "source", schema="backend")
