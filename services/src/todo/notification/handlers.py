"""What the notification service does with one task event: move the task's reminder."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from todo.common.cloudevents import CloudEvent
from todo.common.consumer import PoisonEvent
from todo.common.metrics import REMINDERS_CANCELLED, REMINDERS_SCHEDULED
from todo.notification.schedule import ReminderState
from todo.notification.store import UnusableTaskEvent, apply_task_event


async def move_reminder(session: AsyncSession, event: CloudEvent) -> None:
    try:
        change = await apply_task_event(session, event.type, event.data)
    except UnusableTaskEvent as exc:
        raise PoisonEvent(str(exc)) from None
    if change is None:
        return
    if change.state is ReminderState.PENDING:
        REMINDERS_SCHEDULED.inc()
    elif change.state is ReminderState.CANCELLED and change.fire_at is not None:
        REMINDERS_CANCELLED.inc()
