"""The whole Todo application on the test bed, and helpers for tests of the five services.

Helpers (no processes): :func:`migrate` runs a service's Alembic migrations, :func:`task_event`
builds the CloudEvent the backend would publish, :func:`token_for` signs a JWT.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

#: A JWT signing secret for tests only (never used outside the test bed).
TEST_JWT_SECRET = "testbed-jwt-secret-not-for-production-0123456789"


def migrate(package: str, dsn: str) -> None:
    """Apply ``todo.<package>`` migrations to ``dsn`` (blocking)."""
    from todo.common.migrations import upgrade

    upgrade(package, dsn)


def token_for(user_id: uuid.UUID | str, secret: str = TEST_JWT_SECRET, ttl_seconds: int = 3600) -> str:
    from todo.common.auth import create_access_token

    return create_access_token(uuid.UUID(str(user_id)), secret, ttl_seconds)


def task_snapshot(user_id: uuid.UUID | str, task_id: uuid.UUID | str | None = None, **fields: Any) -> dict:
    """A task as the backend serialises it (fields overridable)."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    task = {
        "id": str(task_id or uuid.uuid4()),
        "user_id": str(user_id),
        "title": "Water the plants",
        "description": "",
        "priority": "medium",
        "tags": [],
        "due_at": None,
        "remind_before_minutes": None,
        "recurrence": None,
        "status": "pending",
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "completed_at": None,
        "series_id": None,
        "occurrence": 1,
        "previous_occurrence_id": None,
        "series_anchor_at": None,
    }
    task.update(fields)
    return task


def task_event(kind: str, task: dict, *, changed_fields: list[str] | None = None,
               event_id: str | None = None, time: datetime | None = None) -> dict:
    """The CloudEvent the backend publishes on ``task-events`` for ``task``."""
    from todo.common.cloudevents import TASK_EVENT_TYPES, build_event

    data = dict(task)
    data["changed_fields"] = changed_fields or []
    return build_event(TASK_EVENT_TYPES[kind], "/todo/backend", task["id"], data,
                       event_id=event_id, time=time)
