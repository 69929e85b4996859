"""processed events of the recurring-task service

Revision ID: recurring_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "recurring_0001"
down_revision = None
branch_labels = None
depends_on = None
SCHEMA = "recurring"


def upgrade() -> None:
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("event_id", name="pk_processed_events"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("processed_events", schema=SCHEMA)
