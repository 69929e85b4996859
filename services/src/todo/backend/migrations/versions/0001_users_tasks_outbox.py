"""users, tasks, outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-29 00:42:40.000632
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _create_outbox()
    _create_users()
    _create_tasks()
    _index_tasks()


def _create_outbox() -> None:
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("partition_key", sa.String(length=200), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
        schema="backend",
    )
    op.create_index(
        "ix_outbox_unsent",
        "outbox",
        ["seq"],
        unique=False,
        schema="backend",
        postgresql_where=sa.text("sent_at IS NULL"),
    )


def _create_users() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        schema="backend",
    )


def _create_tasks() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("priority", sa.String(length=8), server_default="medium", nullable=False),
        sa.Column(
            "priority_rank",
            sa.SmallInteger(),
            sa.Computed("CASE priority WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END", persisted=True),
            nullable=False,
        ),
        sa.Column(
            "tags", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'::text[]"), nullable=False
        ),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("remind_before_minutes", sa.Integer(), nullable=True),
        sa.Column("recurrence", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("series_id", sa.Uuid(), nullable=False),
        sa.Column("occurrence", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("previous_occurrence_id", sa.Uuid(), nullable=True),
        sa.Column("series_anchor_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column(
            "search",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('english', title || ' ' || coalesce(description, ''))", persisted=True),
            nullable=False,
        ),
        sa.CheckConstraint("priority IN ('low', 'medium', 'high')", name=op.f("ck_tasks_priority")),
        sa.CheckConstraint("status IN ('pending', 'completed')", name=op.f("ck_tasks_status")),
        sa.CheckConstraint("occurrence >= 1", name=op.f("ck_tasks_occurrence")),
        sa.CheckConstraint(
            "remind_before_minutes IS NULL OR remind_before_minutes >= 0", name=op.f("ck_tasks_remind")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["backend.users.id"], name=op.f("fk_tasks_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("previous_occurrence_id", name=op.f("uq_tasks_previous_occurrence_id")),
        schema="backend",
    )


def _index_tasks() -> None:
    op.create_index(
        "ix_tasks_search", "tasks", ["search"], unique=False, schema="backend", postgresql_using="gin"
    )
    op.create_index("ix_tasks_series", "tasks", ["series_id", "occurrence"], unique=False, schema="backend")
    op.create_index(
        "ix_tasks_tags", "tasks", ["tags"], unique=False, schema="backend", postgresql_using="gin"
    )
    op.create_index(
        "ix_tasks_user_created", "tasks", ["user_id", "created_at", "id"], unique=False, schema="backend"
    )
    op.create_index("ix_tasks_user_due", "tasks", ["user_id", "due_at", "id"], unique=False, schema="backend")
    op.create_index(
        "ix_tasks_user_priority", "tasks", ["user_id", "priority_rank", "id"], unique=False, schema="backend"
    )
    op.create_index(
        "ix_tasks_user_updated", "tasks", ["user_id", "updated_at", "id"], unique=False, schema="backend"
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_user_updated", table_name="tasks", schema="backend")
    op.drop_index("ix_tasks_user_priority", table_name="tasks", schema="backend")
    op.drop_index("ix_tasks_user_due", table_name="tasks", schema="backend")
    op.drop_index("ix_tasks_user_created", table_name="tasks", schema="backend")
    op.drop_index("ix_tasks_tags", table_name="tasks", schema="backend", postgresql_using="gin")
    op.drop_index("ix_tasks_series", table_name="tasks", schema="backend")
    op.drop_index("ix_tasks_search", table_name="tasks", schema="backend", postgresql_using="gin")
    op.drop_table("tasks", schema="backend")
    op.drop_table("users", schema="backend")
    op.drop_index(
        "ix_outbox_unsent", table_name="outbox", schema="backend", postgresql_where=sa.text("sent_at IS NULL")
    )
    op.drop_table("outbox", schema="backend")
