"""The durable reminder schedule, the scheduler that fires it, and the outbox that delivers it.

Firing is a single transaction per batch: due rows are claimed with ``FOR UPDATE SKIP LOCKED`` (so
two replicas never take the same row), marked ``fired``, and the ``reminder.due`` event is written
to the outbox of ``todo.common.outbox`` (and, when e-mail is configured, a row to ``email_outbox``)
in the same transaction. A crash before the commit leaves the reminder pending; after it, the
outboxes still hold the deliveries. Both relays deliver at least once with the event's id, so a
repeat is recognisable downstream.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID, insert
from sqlalchemy.ext.asyncio import AsyncSession

from todo.common.cloudevents import REMINDER_DUE, TOPIC_REMINDERS, build_event, rfc3339
from todo.common.consumer import ProcessedEventMixin
from todo.common.db import declarative_base
from todo.common.outbox import OutboxMixin, add_event
from todo.notification.schedule import ReminderChange, ReminderState, StoredReminder, decide, timing

SCHEMA = "notification"
SOURCE = "/todo/notification"
Base = declarative_base(SCHEMA)
metadata = Base.metadata


class ReminderOutbox(OutboxMixin, Base):
    __tablename__ = "outbox"


class ProcessedEvent(ProcessedEventMixin, Base):
    __tablename__ = "processed_events"


reminders = sa.Table(
    "reminders",
    metadata,
    sa.Column("task_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("user_id", UUID(as_uuid=True), nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("fire_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("task_version", sa.Integer, nullable=False),
    sa.Column("task", JSONB, nullable=False),
    sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("late", sa.Boolean, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
sa.Index("ix_reminders_pending_fire_at", reminders.c.fire_at, postgresql_where=reminders.c.state == "pending")

email_outbox = sa.Table(
    "email_outbox",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("event_id", sa.Text, nullable=False, unique=True),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("payload", JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
)
sa.Index(
    "ix_email_outbox_undelivered", email_outbox.c.id, postgresql_where=email_outbox.c.delivered_at.is_(None)
)


#: An e-mail that failed this often is left for an operator (last_error says why).
MAX_EMAIL_ATTEMPTS = 20


class UnusableTaskEvent(ValueError):
    """A task event without the fields a reminder needs (poison: goes to the DLQ)."""


def _uuid(value: Any, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError):
        raise UnusableTaskEvent(f"{what} is not a UUID") from None


async def apply_task_event(
    session: AsyncSession, event_type: str, task: dict[str, Any]
) -> ReminderChange | None:
    """Move the task's reminder as the event says; returns what changed (None: nothing)."""
    if not isinstance(task, dict):
        raise UnusableTaskEvent("data must be an object")
    task_id = _uuid(task.get("id"), "data.id")
    user_id = _uuid(task.get("user_id"), "data.user_id")
    row = (
        (await session.execute(sa.select(reminders).where(reminders.c.task_id == task_id).with_for_update()))
        .mappings()
        .first()
    )
    stored = StoredReminder(row["task_version"], row["fire_at"], ReminderState(row["state"])) if row else None
    try:
        change = decide(event_type, task, stored)
    except (TypeError, ValueError) as exc:
        raise UnusableTaskEvent(f"bad reminder fields: {exc}") from None
    if change is None:
        return None
    values = {
        "user_id": user_id,
        "state": change.state.value,
        "fire_at": change.fire_at,
        "due_at": change.due_at,
        "task_version": change.version,
        "task": {k: v for k, v in task.items() if k != "changed_fields"},
        "updated_at": sa.func.now(),
    }
    if change.state is ReminderState.PENDING:
        values.update(fired_at=None, late=None)
    stmt = insert(reminders).values(task_id=task_id, **values)
    stmt = stmt.on_conflict_do_update(index_elements=[reminders.c.task_id], set_=values)
    await session.execute(stmt)
    return change


@dataclass(frozen=True)
class FiredReminder:
    task_id: uuid.UUID
    fire_at: datetime
    fired_at: datetime
    timing: str


async def fire_due(
    session: AsyncSession, *, now: datetime | None = None, limit: int = 100, email_to: str | None = None
) -> list[FiredReminder]:
    """Claim due reminders (skipping rows another replica holds), mark them fired, queue deliveries."""
    now = now or datetime.now(UTC)
    rows = (
        (
            await session.execute(
                sa.select(reminders)
                .where(reminders.c.state == ReminderState.PENDING.value, reminders.c.fire_at <= now)
                .order_by(reminders.c.fire_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        .mappings()
        .all()
    )
    fired: list[FiredReminder] = []
    for row in rows:
        label = timing(row["fire_at"], now)
        await session.execute(
            reminders.update()
            .where(reminders.c.task_id == row["task_id"])
            .values(state=ReminderState.FIRED.value, fired_at=now, late=label == "late", updated_at=now)
        )
        data = {
            "task_id": str(row["task_id"]),
            "user_id": str(row["user_id"]),
            "fire_at": rfc3339(row["fire_at"]),
            "fired_at": rfc3339(now),
            "due_at": rfc3339(row["due_at"]) if row["due_at"] else None,
            "late": label == "late",
            "version": row["task_version"],
            "task": row["task"],
        }
        event = build_event(REMINDER_DUE, SOURCE, str(row["task_id"]), data, time=now)
        add_event(session, ReminderOutbox, TOPIC_REMINDERS, event, str(row["task_id"]))
        recipient = (row["task"] or {}).get("user_email") or email_to
        if recipient:
            await session.execute(
                insert(email_outbox)
                .values(event_id=event["id"], recipient=recipient, payload=event)
                .on_conflict_do_nothing()
            )
        fired.append(FiredReminder(row["task_id"], row["fire_at"], now, label))
    return fired


async def claim_emails(session: AsyncSession, limit: int = 20) -> list[dict[str, Any]]:
    rows = await session.execute(
        sa.select(email_outbox)
        .where(email_outbox.c.delivered_at.is_(None), email_outbox.c.attempts < MAX_EMAIL_ATTEMPTS)
        .order_by(email_outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [dict(r) for r in rows.mappings().all()]


async def mark_email_sent(session: AsyncSession, row_id: int) -> None:
    await session.execute(
        email_outbox.update().where(email_outbox.c.id == row_id).values(delivered_at=sa.func.now())
    )


async def mark_email_failed(session: AsyncSession, row_id: int, error: str) -> None:
    t = email_outbox
    await session.execute(
        t.update().where(t.c.id == row_id).values(attempts=t.c.attempts + 1, last_error=error[:500])
    )


async def pending_count(session: AsyncSession) -> int:
    stmt = sa.select(sa.func.count()).select_from(reminders).where(reminders.c.state == "pending")
    return int((await session.execute(stmt)).scalar_one())
