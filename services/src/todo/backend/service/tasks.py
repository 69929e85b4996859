"""Task commands. Every change happens under a row lock, increments ``version`` and queues its
CloudEvent in the outbox within the same transaction (``events.queue_event``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from todo.backend.domain import Status, check_recurrence_fits
from todo.backend.models import Outbox, Task
from todo.backend.schemas import NextOccurrenceRequest, TaskCreate, TaskUpdate
from todo.backend.service.events import (
    SNAPSHOT_FIELDS,
    events_committed,
    queue_event,
    snapshot,
    snapshot_event,
)
from todo.common.cloudevents import TOPIC_TASK_EVENTS
from todo.common.context import bind
from todo.common.db import Database, DriverStatement
from todo.common.errors import ProblemError

#: Fields a client can change; changed_fields of an update lists those that really changed.
EDITABLE_FIELDS = tuple(TaskUpdate.model_fields)


def _new_task_row(user_id: uuid.UUID, content: dict[str, Any], **series: Any) -> dict[str, Any]:
    """Every column of a new task's snapshot: ``content`` holds the EDITABLE_FIELDS, ``series``
    the place in a series of a next occurrence (by default the first of its own series)."""
    now = datetime.now(UTC)
    task_id = uuid.uuid4()
    row = {
        "id": task_id,
        "user_id": user_id,
        **{name: content[name] for name in EDITABLE_FIELDS},
        "status": Status.pending.value,
        "completed_at": None,
        "version": 1,
        "series_id": task_id,
        "occurrence": 1,
        "previous_occurrence_id": None,
        "series_anchor_at": content["due_at"],
        "created_at": now,
        "updated_at": now,
        **series,
    }
    return {name: row[name] for name in SNAPSHOT_FIELDS}


def _not_found() -> ProblemError:
    return ProblemError(404, "task-not-found", "No such task.")


async def get_task(
    session: AsyncSession, user_id: uuid.UUID, task_id: uuid.UUID, *, lock: bool = False
) -> Task:
    stmt = select(Task).where(Task.id == task_id, Task.user_id == user_id)
    if lock:
        stmt = stmt.with_for_update()
    task = (await session.execute(stmt)).scalar_one_or_none()
    if task is None:
        raise _not_found()  # another user's task looks exactly like a missing one
    bind(task_id=task.id)
    return task


async def create_task(db: Database, user_id: uuid.UUID, body: TaskCreate) -> dict[str, Any]:
    """Insert the task and its created event in ONE statement (a data-modifying CTE): atomic, and a
    single round trip in autocommit mode instead of BEGIN/INSERT/INSERT/COMMIT.

    The busiest write, so it runs as a driver statement (docs/performance.md): no ORM object, no
    SQLAlchemy execution layers. Returns the new task's snapshot: JSON-safe, with the fields and
    formats of ``TaskResponse``, so it serves as the response body too."""
    content = {name: getattr(body, name) for name in EDITABLE_FIELDS}
    content["priority"] = body.priority.value
    content["recurrence"] = body.recurrence.model_dump(mode="json") if body.recurrence else None
    task = _new_task_row(user_id, content)
    bind(task_id=task["id"])
    state = snapshot(task)
    event = snapshot_event(state, "created", list(SNAPSHOT_FIELDS))
    params = {f"t_{name}": value for name, value in task.items()}
    params.update(
        o_event_id=uuid.UUID(event["id"]),
        o_topic=TOPIC_TASK_EVENTS,
        o_event_type=event["type"],
        o_partition_key=state["id"],
        o_payload=event,
    )
    await db.driver_execute(_CREATE_WITH_EVENT, params)
    events_committed(db.engine.sync_engine)  # autocommit: committed with the statement
    return state


def _create_with_event_statement() -> DriverStatement:
    """Built and compiled once (bind parameters only)."""
    tasks, outbox = Task.__table__, Outbox.__table__
    new_task = (
        insert(tasks)
        .values({name: bindparam(f"t_{name}", type_=tasks.c[name].type) for name in SNAPSHOT_FIELDS})
        .returning(tasks.c.id)
        .cte("new_task")
    )
    columns = ["event_id", "topic", "event_type", "partition_key", "payload"]
    return DriverStatement(
        insert(outbox).from_select(
            columns,
            select(*(bindparam(f"o_{name}", type_=outbox.c[name].type) for name in columns)).select_from(
                new_task
            ),
        )
    )


_CREATE_WITH_EVENT = _create_with_event_statement()


async def update_task(
    session: AsyncSession, user_id: uuid.UUID, task_id: uuid.UUID, body: TaskUpdate
) -> Task:
    task = await get_task(session, user_id, task_id, lock=True)
    changes = body.changes()
    changed = [name for name, value in changes.items() if getattr(task, name) != value]
    if not changed:
        await session.commit()  # releases the row lock; commit (unlike rollback) keeps attributes loaded
        return task
    for name in changed:
        setattr(task, name, changes[name])
    if "due_at" in changed or "recurrence" in changed:
        try:
            check_recurrence_fits(task.due_at, task.recurrence)
        except ValueError as exc:
            await session.rollback()
            raise ProblemError(422, "validation-error", str(exc)) from None
    _touch(task)
    queue_event(session, task, "updated", sorted(changed) + ["updated_at", "version"])
    await session.commit()
    return task


def _touch(task: Task) -> None:
    task.version += 1
    task.updated_at = datetime.now(UTC)


async def set_completed(
    session: AsyncSession, user_id: uuid.UUID, task_id: uuid.UUID, completed: bool
) -> Task:
    """Complete or reopen; doing it again is a no-op (same version, no event)."""
    task = await get_task(session, user_id, task_id, lock=True)
    target = Status.completed if completed else Status.pending
    if task.status == target.value:
        await session.commit()
        return task
    task.status = target.value
    task.completed_at = datetime.now(UTC) if completed else None
    _touch(task)
    queue_event(
        session,
        task,
        "completed" if completed else "updated",
        ["completed_at", "status", "updated_at", "version"],
    )
    await session.commit()
    return task


async def delete_task(session: AsyncSession, user_id: uuid.UUID, task_id: uuid.UUID) -> None:
    task = await get_task(session, user_id, task_id, lock=True)
    _touch(task)  # the deleted event carries the next version, keeping the per-task order
    queue_event(session, task, "deleted", [])
    await session.delete(task)
    await session.commit()


async def create_next_occurrence(
    session: AsyncSession, source_id: uuid.UUID, body: NextOccurrenceRequest
) -> tuple[Task, bool]:
    """The occurrence after ``source_id``: created once, returned as is on every later call."""
    existing = await _occurrence_after(session, source_id)
    if existing is not None:
        return existing, False
    source = (await session.execute(select(Task).where(Task.id == source_id))).scalar_one_or_none()
    if source is None:
        raise _not_found()
    bind(task_id=source.id, user_id=source.user_id)
    _check_series_continues(source, body)
    content = {name: getattr(source, name) for name in EDITABLE_FIELDS}
    content.update(tags=list(source.tags), due_at=body.due_at)
    row = _new_task_row(
        source.user_id,
        content,
        series_id=source.series_id,
        occurrence=source.occurrence + 1,
        previous_occurrence_id=source.id,
        series_anchor_at=source.series_anchor_at or body.series_anchor_at,
    )
    inserted = (
        await session.execute(
            insert(Task)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["previous_occurrence_id"])
            .returning(Task.id)
        )
    ).first()
    if inserted is None:  # a concurrent call created it first
        await session.rollback()
        existing = await _occurrence_after(session, source_id)
        if existing is None:
            raise ProblemError(409, "conflict", "The next occurrence is being created; retry.")
        return existing, False
    task = (await session.execute(select(Task).where(Task.id == row["id"]))).scalar_one()
    queue_event(session, task, "created", list(SNAPSHOT_FIELDS))
    await session.commit()
    return task, True


def _check_series_continues(source: Task, body: NextOccurrenceRequest) -> None:
    rule = source.recurrence
    if not rule:
        raise ProblemError(409, "not-recurring", "The task has no recurrence.")
    if rule.get("count") is not None and source.occurrence >= rule["count"]:
        raise ProblemError(409, "series-ended", "The series has reached its count.")
    if rule.get("until") and body.due_at and body.due_at > datetime.fromisoformat(rule["until"]):
        raise ProblemError(409, "series-ended", "The next due date is after the series' end.")


async def _occurrence_after(session: AsyncSession, source_id: uuid.UUID) -> Task | None:
    stmt = select(Task).where(Task.previous_occurrence_id == source_id)
    return (await session.execute(stmt)).scalar_one_or_none()
