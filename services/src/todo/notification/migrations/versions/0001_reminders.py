"""reminder schedule and delivery outbox

Revision ID: notification_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "notification_0001"
down_revision = None
branch_labels = None
depends_on = None
SCHEMA = "notification"


def upgrade() -> None:
    _create_processed_events()
    _create_reminders()
    _create_outbox()
    _create_email_outbox()


def _create_processed_events() -> None:
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("event_id", name="pk_processed_events"),
        schema=SCHEMA,
    )


def _create_reminders() -> None:
    op.create_table(
        "reminders",
        sa.Column("task_id", UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("task_version", sa.Integer, nullable=False),
        sa.Column("task", JSONB, nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("late", sa.Boolean, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("task_id", name="pk_reminders"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_reminders_pending_fire_at",
        "reminders",
        ["fire_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("state = 'pending'"),
    )


def _create_outbox() -> None:
    # Columns of todo.common.outbox.OutboxMixin (the relay of the shared library publishes it).
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("partition_key", sa.String(200), nullable=True),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_outbox_unsent", "outbox", ["seq"], schema=SCHEMA, postgresql_where=sa.text("sent_at IS NULL")
    )


def _create_email_outbox() -> None:
    op.create_table(
        "email_outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_email_outbox"),
        sa.UniqueConstraint("event_id", name="uq_email_outbox_event_id"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_email_outbox_undelivered",
        "email_outbox",
        ["id"],
        schema=SCHEMA,
        postgresql_where=sa.text("delivered_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("processed_events", schema=SCHEMA)
    op.drop_table("email_outbox", schema=SCHEMA)
    op.drop_table("outbox", schema=SCHEMA)
    op.drop_table("reminders", schema=SCHEMA)
