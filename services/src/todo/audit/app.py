"""The audit service: an append-only log of every task event and a read API for a user's own trail."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query

from todo.audit.handlers import AUDITED_TYPES, audit_task_event
from todo.audit.store import AuditQuery, BadCursor, ProcessedEvent, full_type, query
from todo.common.app import create_service_app
from todo.common.auth import CurrentUser
from todo.common.cloudevents import TOPIC_TASK_EVENTS
from todo.common.consumer import subscribe
from todo.common.db import Session
from todo.common.errors import ProblemError, problem_responses
from todo.common.settings import ServiceSettings
from todo.common.validation import ApiDatetime

SERVICE = "audit"

router = APIRouter(tags=["audit"])
#: what ?type= takes: an audited type, with or without its "com.todo." prefix
_TYPE_NAMES = {*AUDITED_TYPES, *(t.removeprefix("com.todo.") for t in AUDITED_TYPES)}


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@router.get(
    "/api/audit",
    summary="The caller's audit trail",
    description="Task events of the authenticated user in event-time order, newest last. "
    "Filter by task, event type (`task.created` or `com.todo.task.created`) and time window "
    "[since, until); follow `next_cursor` for the next page.",
    responses=problem_responses(400, 401, 422),
)
async def read_audit_trail(
    user_id: CurrentUser,
    session: Session,
    task_id: uuid.UUID | None = None,
    event_type: Annotated[
        str | None, Query(alias="type", json_schema_extra={"enum": sorted(_TYPE_NAMES)})
    ] = None,
    since: ApiDatetime | None = None,
    until: ApiDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page (else 400)")
    ] = None,
) -> dict[str, Any]:
    if event_type is not None and full_type(event_type) not in AUDITED_TYPES:
        known = ", ".join(sorted(AUDITED_TYPES))
        raise ProblemError(400, "bad-event-type", f"type must be one of: {known} (or without 'com.todo.')")
    since, until = _utc(since), _utc(until)
    if since and until and since >= until:
        raise ProblemError(400, "bad-time-window", "since must be earlier than until")
    q = AuditQuery(user_id, task_id, event_type, since, until, limit, cursor)
    try:
        items, next_cursor = await query(session, q)
    except BadCursor as exc:
        raise ProblemError(400, "bad-cursor", str(exc)) from None
    return {"items": items, "next_cursor": next_cursor}


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    app = create_service_app(
        service=SERVICE,
        settings=settings,
        title="Todo audit service",
        description="Records every task event exactly once; serves each user's own audit trail.",
        routers=[router],
    )
    subscribe(app, TOPIC_TASK_EVENTS, audit_task_event, processed=ProcessedEvent)
    return app
