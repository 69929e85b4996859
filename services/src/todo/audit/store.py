"""The audit log: one append-only row per task event, and the reader's query."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from todo.common.cloudevents import CloudEvent
from todo.common.consumer import ProcessedEventMixin
from todo.common.db import declarative_base

SCHEMA = "audit"
Base = declarative_base(SCHEMA)
metadata = Base.metadata


class ProcessedEvent(ProcessedEventMixin, Base):
    __tablename__ = "processed_events"


# No foreign key to the backend's tasks: a task.deleted row outlives its task.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("event_id", sa.Text, nullable=False, unique=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("task_id", UUID(as_uuid=True), nullable=True),
    sa.Column("user_id", UUID(as_uuid=True), nullable=False),
    sa.Column("task_version", sa.Integer, nullable=True),
    sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("envelope", JSONB, nullable=False),
    sa.Column("data", JSONB, nullable=False),
)
sa.Index("ix_audit_log_user_time", audit_log.c.user_id, audit_log.c.event_time, audit_log.c.id)
sa.Index("ix_audit_log_task", audit_log.c.task_id)


class UnusableEvent(ValueError):
    """A task event the audit log cannot record (no user id, no time): poison, goes to the DLQ."""


def _uuid(value: Any, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError):
        raise UnusableEvent(f"{what} is not a UUID") from None


def row_of(event: CloudEvent, envelope: dict[str, Any]) -> dict[str, Any]:
    data = event.data
    if not isinstance(data, dict):
        raise UnusableEvent("data must be an object")
    if event.time is None:
        raise UnusableEvent("the event has no time")
    task_ref = event.subject or data.get("id")
    version = data.get("version")
    return {
        "event_id": event.id,
        "event_type": event.type,
        "source": event.source,
        "task_id": _uuid(task_ref, "subject") if task_ref else None,
        "user_id": _uuid(data.get("user_id"), "data.user_id"),
        "task_version": version if isinstance(version, int) else None,
        "event_time": event.time,
        "envelope": {k: v for k, v in envelope.items() if k not in ("data", "data_base64")},
        "data": data,
    }


async def record(session: AsyncSession, event: CloudEvent, envelope: dict[str, Any]) -> bool:
    """Append the event; ``False`` when it is already in the log (a redelivery)."""
    stmt = (
        sa.dialects.postgresql.insert(audit_log)
        .values(**row_of(event, envelope))
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(audit_log.c.id)
    )
    return (await session.execute(stmt)).first() is not None


@dataclass(frozen=True)
class AuditQuery:
    user_id: uuid.UUID
    task_id: uuid.UUID | None = None
    event_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    cursor: str | None = None


class BadCursor(ValueError):
    pass


def encode_cursor(event_time: datetime, row_id: int) -> str:
    raw = orjson.dumps([event_time.isoformat(), row_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, row_id = orjson.loads(raw)
        return datetime.fromisoformat(stamp), int(row_id)
    except Exception:
        raise BadCursor("cursor is not one this API returned") from None


def full_type(value: str) -> str:
    """Accept ``task.created`` or ``com.todo.task.created``."""
    return value if value.startswith("com.todo.") else f"com.todo.{value}"


async def query(session: AsyncSession, q: AuditQuery) -> tuple[list[dict[str, Any]], str | None]:
    """The caller's trail in event-time order, one page, and the cursor of the next page."""
    t = audit_log
    stmt = sa.select(t).where(t.c.user_id == q.user_id)
    if q.task_id is not None:
        stmt = stmt.where(t.c.task_id == q.task_id)
    if q.event_type:
        stmt = stmt.where(t.c.event_type == full_type(q.event_type))
    if q.since is not None:
        stmt = stmt.where(t.c.event_time >= q.since)
    if q.until is not None:
        stmt = stmt.where(t.c.event_time < q.until)
    if q.cursor:
        after_time, after_id = decode_cursor(q.cursor)
        after = sa.tuple_(sa.literal(after_time, sa.DateTime(timezone=True)), sa.literal(after_id))
        stmt = stmt.where(sa.tuple_(t.c.event_time, t.c.id) > after)
    stmt = stmt.order_by(t.c.event_time, t.c.id).limit(q.limit + 1)
    rows = (await session.execute(stmt)).mappings().all()
    page, more = rows[: q.limit], len(rows) > q.limit
    items = [
        {
            "event_id": r["event_id"],
            "type": r["event_type"],
            "time": r["event_time"].isoformat().replace("+00:00", "Z"),
            "task_id": str(r["task_id"]) if r["task_id"] else None,
            "version": r["task_version"],
            "source": r["source"],
            "recorded_at": r["recorded_at"].isoformat().replace("+00:00", "Z"),
            "data": r["data"],
        }
        for r in page
    ]
    next_cursor = encode_cursor(page[-1]["event_time"], page[-1]["id"]) if more else None
    return items, next_cursor
