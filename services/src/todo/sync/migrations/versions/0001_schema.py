"""sync schema (no tables: connections are per-replica memory)

Revision ID: sync_0001
Revises:
"""

revision = "sync_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
