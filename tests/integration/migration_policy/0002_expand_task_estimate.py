"""expand: tasks.estimate_minutes (nullable; the previous image neither reads nor writes it)

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
    op.add_column("tasks", sa.Column("estimate_minutes", sa.Integer(), nullable=True), schema="backend")


def downgrade() -> None:
    op.drop_column("tasks", "estimate_minutes", schema="backend")
