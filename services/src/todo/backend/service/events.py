"""A task's snapshot and CloudEvents, and the hook that wakes the outbox relay after a commit.

Every change to a task queues its event in the outbox within the change's transaction, so events
of one task are published in version order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from todo.backend.models import Outbox, Task
from todo.backend.schemas import TaskResponse
from todo.common.cloudevents import TASK_EVENT_TYPES, TOPIC_TASK_EVENTS, build_event, rfc3339
from todo.common.context import event_extensions
from todo.common.outbox import add_event

SOURCE = "/todo/backend"
#: The fields of a task's snapshot: the API's task (TaskResponse), in its order; each is a column.
SNAPSHOT_FIELDS = tuple(TaskResponse.model_fields)
_not_columns = set(SNAPSHOT_FIELDS) - set(Task.__table__.c.keys())
if _not_columns:
    raise RuntimeError(f"TaskResponse fields without a tasks column: {sorted(_not_columns)}")


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list):
        return list(value)
    return value


_snapshot_attributes = attrgetter(*SNAPSHOT_FIELDS)
_snapshot_items = itemgetter(*SNAPSHOT_FIELDS)


def snapshot(task: Task | Mapping[str, Any]) -> dict[str, Any]:
    """The task (a row object, or its columns by name) as JSON-safe data (event ``data`` without
    ``changed_fields``): the fields and formats of ``TaskResponse``, so it serves as a response body."""
    values = _snapshot_items(task) if isinstance(task, Mapping) else _snapshot_attributes(task)
    return {name: _json_value(value) for name, value in zip(SNAPSHOT_FIELDS, values, strict=True)}


def task_event(task: Task | Mapping[str, Any], kind: str, changed_fields: list[str]) -> dict[str, Any]:
    """The CloudEvent of a change: the full snapshot plus ``changed_fields``."""
    return snapshot_event(snapshot(task), kind, changed_fields)


def snapshot_event(state: dict[str, Any], kind: str, changed_fields: list[str]) -> dict[str, Any]:
    """The CloudEvent of a change from the task's snapshot (which is not changed)."""
    data = {**state, "changed_fields": changed_fields}
    return build_event(TASK_EVENT_TYPES[kind], SOURCE, state["id"], data, extensions=event_extensions())


def queue_event(session: AsyncSession, task: Task, kind: str, changed_fields: list[str]) -> None:
    """Queue the change's event in the session's transaction; its commit wakes the relay."""
    add_event(session, Outbox, TOPIC_TASK_EVENTS, task_event(task, kind, changed_fields), str(task.id))
    session.info[_QUEUED] = True


# ----------------------------------------------------------------------------------------------
# Waking the relay: one hook after every commit that queued events, so no caller has to remember.

_QUEUED = "todo.backend.events_queued"
_wakers: dict[Engine, Callable[[], None]] = {}


def wake_on_commit(engine: AsyncEngine, wake: Callable[[], None]) -> Callable[[], None]:
    """Call ``wake`` (the relay's ``notify``) after each commit on ``engine`` that queued task
    events; returns the function that stops it."""
    _wakers[engine.sync_engine] = wake
    return lambda: _wakers.pop(engine.sync_engine, None)


def events_committed(engine: Engine) -> None:
    """Events were committed on ``engine`` (by a session, or by create's single statement)."""
    wake = _wakers.get(engine)
    if wake is not None:
        wake()


@event.listens_for(Session, "after_commit")
def _session_committed(session: Session) -> None:
    if session.info.pop(_QUEUED, False):
        bind = session.get_bind()
        if isinstance(bind, Engine):
            events_committed(bind)


@event.listens_for(Session, "after_rollback")
def _session_rolled_back(session: Session) -> None:
    session.info.pop(_QUEUED, None)
