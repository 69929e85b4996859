"""contract (breaks the previous image): drops tasks.tags, which the previous image writes and reads

Revision ID: 0003c
Revises: 0002
"""

from alembic import op

revision = "0003c"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_column("tasks", "tags", schema="backend")


def downgrade() -> None:
    raise NotImplementedError
