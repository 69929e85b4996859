"""Reminder rules: how task events move a task's reminder, and how late a firing is.

One reminder per task, at ``due_at - remind_before_minutes``. A task event carries the task's
``version`` (a DB column), so an event older than what the schedule already reflects is ignored:
Kafka keeps per-task order, but a redelivery after a retry can still bring an old event back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from todo.recurring.recurrence import parse_time

#: A reminder fired more than this after its time counts as late (e.g. after downtime).
LATE_AFTER = timedelta(seconds=60)

TASK_CREATED = "com.todo.task.created"
TASK_UPDATED = "com.todo.task.updated"
TASK_COMPLETED = "com.todo.task.completed"
TASK_DELETED = "com.todo.task.deleted"


class ReminderState(StrEnum):
    PENDING = "pending"
    FIRED = "fired"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class StoredReminder:
    version: int
    fire_at: datetime | None
    state: ReminderState


@dataclass(frozen=True)
class ReminderChange:
    """What to store for the task: ``None`` from :func:`decide` means leave the row as it is."""

    version: int
    fire_at: datetime | None
    state: ReminderState
    due_at: datetime | None


def wanted_fire_at(task: dict[str, Any]) -> datetime | None:
    """When the task's reminder should fire, or ``None`` when it wants none."""
    if task.get("status") == "completed":
        return None
    due_raw, before = task.get("due_at"), task.get("remind_before_minutes")
    if not due_raw or before is None:
        return None
    return parse_time(due_raw) - timedelta(minutes=int(before))


def decide(event_type: str, task: dict[str, Any], stored: StoredReminder | None) -> ReminderChange | None:
    version = int(task.get("version") or 0)
    if stored is not None and version <= stored.version:
        return None  # stale or repeated: the schedule already reflects a newer state
    due_at = parse_time(task["due_at"]) if task.get("due_at") else None
    if event_type in (TASK_COMPLETED, TASK_DELETED):
        fire_at = None
    elif event_type in (TASK_CREATED, TASK_UPDATED):
        fire_at = wanted_fire_at(task)
    else:
        return None
    if fire_at is None:
        if stored is None:
            return ReminderChange(version, None, ReminderState.CANCELLED, due_at)
        return ReminderChange(version, stored.fire_at, ReminderState.CANCELLED, due_at)
    if stored is not None and stored.state is ReminderState.FIRED and stored.fire_at == fire_at:
        # Same reminder time as the one already delivered (e.g. a title edit): do not fire again.
        return ReminderChange(version, fire_at, ReminderState.FIRED, due_at)
    return ReminderChange(version, fire_at, ReminderState.PENDING, due_at)


def timing(fire_at: datetime, fired_at: datetime) -> str:
    """``on_time`` or ``late`` (the ``timing`` label of ``todo_reminders_fired_total``)."""
    return "late" if fired_at - fire_at > LATE_AFTER else "on_time"
