"""Tables of the backend (schema ``backend``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from todo.common.db import declarative_base
from todo.common.outbox import OutboxMixin

SCHEMA = "backend"
Base = declarative_base(SCHEMA)


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(f"{SCHEMA}.users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    priority: Mapped[str] = mapped_column(String(8), server_default="medium")
    priority_rank: Mapped[int] = mapped_column(
        SmallInteger,
        Computed("CASE priority WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END", persisted=True),
    )
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    remind_before_minutes: Mapped[int | None] = mapped_column(Integer)
    recurrence: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    series_id: Mapped[uuid.UUID] = mapped_column()
    occurrence: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    previous_occurrence_id: Mapped[uuid.UUID | None] = mapped_column(unique=True)
    series_anchor_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    search: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed("to_tsvector('english', title || ' ' || coalesce(description, ''))", persisted=True),
        deferred=True,
    )

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'completed')", name="status"),
        CheckConstraint("priority IN ('low', 'medium', 'high')", name="priority"),
        CheckConstraint("remind_before_minutes IS NULL OR remind_before_minutes >= 0", name="remind"),
        CheckConstraint("occurrence >= 1", name="occurrence"),
        Index("ix_tasks_user_created", "user_id", "created_at", "id"),
        Index("ix_tasks_user_updated", "user_id", "updated_at", "id"),
        Index("ix_tasks_user_due", "user_id", "due_at", "id"),
        Index("ix_tasks_user_priority", "user_id", "priority_rank", "id"),
        Index("ix_tasks_tags", "tags", postgresql_using="gin"),
        Index("ix_tasks_search", "search", postgresql_using="gin"),
        Index("ix_tasks_series", "series_id", "occurrence"),
    )


class Outbox(OutboxMixin, Base):
    __tablename__ = "outbox"
