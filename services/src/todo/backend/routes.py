"""HTTP routes of the Task API (thin: validation by the schemas, logic in ``service``)."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import AfterValidator, BaseModel, Field

from todo.backend import service
from todo.backend.auth_limits import AuthLimits
from todo.backend.domain import (
    TAG_LIST_PATTERN,
    Cursor,
    InvalidCursor,
    Priority,
    SortKey,
    SortOrder,
    Status,
    TagsMatch,
    normalize_tags,
)
from todo.backend.schemas import (
    TITLE_PATTERN,
    LoginRequest,
    NextOccurrenceRequest,
    RegisterRequest,
    TaskCreate,
    TaskPage,
    TaskResponse,
    TaskUpdate,
    TokenResponse,
    UserResponse,
)
from todo.common.auth import CurrentUser, create_access_token, jwt_keys_of, require_app_token
from todo.common.db import ReadSession, Session
from todo.common.errors import ProblemError, problem_responses
from todo.common.validation import ApiDatetime, storable_text

auth_router = APIRouter(prefix="/api/auth", tags=["auth"])
tasks_router = APIRouter(prefix="/api/tasks", tags=["tasks"], responses=problem_responses(401, 422))
internal_router = APIRouter(prefix="/internal", tags=["internal"], dependencies=[Depends(require_app_token)])


def _admitted(request: Request, email: str) -> AuthLimits:
    """The backend's auth limits, after spending one attempt of this client and this account."""
    limits: AuthLimits = request.app.state.auth_limits
    limits.admit(request.client.host if request.client else "unknown", email)
    return limits


@auth_router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserResponse,
    responses=problem_responses(409, 422, 429, 503),
    summary="Create an account",
)
async def register(body: RegisterRequest, request: Request, session: Session) -> UserResponse:
    limits = _admitted(request, body.email)
    user = await service.register_user(session, body.email, body.password, limits.hashing)
    return UserResponse(id=user.id, email=user.email, created_at=user.created_at)


@auth_router.post(
    "/login",
    response_model=TokenResponse,
    responses=problem_responses(401, 422, 429, 503),
    summary="Get an access token",
)
async def login(body: LoginRequest, request: Request, session: Session) -> TokenResponse:
    keys = jwt_keys_of(request.app)
    limits = _admitted(request, body.email)
    user = await service.authenticate(session, body.email, body.password, limits.hashing)
    ttl = request.app.state.settings.jwt_ttl_seconds
    return TokenResponse(
        access_token=create_access_token(user.id, keys, ttl), expires_in=ttl, user_id=user.id
    )


def _task(task: object) -> TaskResponse:
    return TaskResponse.model_validate(task, from_attributes=True)


def _json(model: BaseModel, status_code: int = status.HTTP_200_OK) -> Response:
    """The model serialised once, by pydantic. Returned as a model, FastAPI would dump it, validate
    it again against response_model and encode it with the stdlib json module; response_model on
    the route still documents the shape in OpenAPI."""
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")


@tasks_router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=TaskResponse, summary="Create a task"
)
async def create_task(body: TaskCreate, user_id: CurrentUser, request: Request) -> Response:
    state = await service.create_task(request.app.state.db, user_id, body)
    # The snapshot built for the event is already TaskResponse's JSON (services/tests/backend/test_tasks.py
    # checks it against GET): no second validation and serialisation of the same task.
    return Response(orjson.dumps(state), status_code=status.HTTP_201_CREATED, media_type="application/json")


def _tags_query(values: list[str]) -> list[str]:
    """Tags of the filter: each value is one tag or comma-separated tags (empty parts ignored)."""
    for value in values:
        if not _TAG_LIST.fullmatch(value):
            raise ValueError("tags: comma-separated tags of 1-50 characters without control characters")
    parts = [p for v in values for p in v.split(",") if p.strip()]
    return normalize_tags(parts, limit=None)


def _q(value: str) -> str:
    value = storable_text(value).strip()
    if not value:
        raise ValueError("search text must not be blank")
    return value


_TAG_LIST = re.compile(TAG_LIST_PATTERN)
QueryTime = ApiDatetime


def _page_cursor(cursor: str | None, sort: SortKey, order: SortOrder) -> None:
    """A cursor this API did not hand out is refused here, before the query (400 bad-cursor)."""
    if cursor is not None:
        try:
            Cursor.decode(cursor, sort, order)
        except InvalidCursor as exc:
            raise ProblemError(400, "bad-cursor", str(exc)) from None


@tasks_router.get(
    "",
    response_model=TaskPage,
    responses=problem_responses(400),
    summary="List, filter, search and sort tasks",
)
async def list_tasks(
    user_id: CurrentUser,
    request: Request,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    priority: Annotated[list[Priority] | None, Query(description="repeat for several")] = None,
    tags: Annotated[
        list[Annotated[str, Field(max_length=500, json_schema_extra={"pattern": TAG_LIST_PATTERN})]] | None,
        Query(max_length=20, description="repeat or comma-separate"),
        AfterValidator(lambda v: _tags_query(v) if v else v),
    ] = None,
    tags_match: Annotated[TagsMatch, Query(description="all: every tag; any: at least one")] = TagsMatch.all,
    due_from: Annotated[QueryTime | None, Query(description="due at or after (time-zone aware)")] = None,
    due_to: Annotated[QueryTime | None, Query(description="due at or before (time-zone aware)")] = None,
    overdue: Annotated[bool | None, Query(description="pending and due in the past")] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="full-text search in title and description",
            json_schema_extra={"pattern": TITLE_PATTERN},
        ),
        AfterValidator(lambda v: _q(v) if v is not None else v),
    ] = None,
    sort: SortKey = SortKey.created,
    order: SortOrder = SortOrder.desc,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None, Query(max_length=500, description="next_cursor of the previous page (else 400)")
    ] = None,
) -> Response:
    _page_cursor(cursor, sort, order)
    filters = service.TaskFilter(
        status=status_,
        priority=priority or [],
        tags=tags or [],
        tags_match=tags_match,
        due_from=due_from,
        due_to=due_to,
        overdue=overdue,
        q=q,
        sort=sort,
        order=order,
        limit=limit,
        cursor=cursor,
    )
    rows, next_cursor = await service.list_tasks(request.app.state.db, user_id, filters)
    # one validation for the page, rows as plain dicts (pydantic reads a dict several times faster
    # than a Row or its mapping view)
    items = [dict(zip(service.SNAPSHOT_FIELDS, row, strict=True)) for row in rows]  # the listed columns
    return _json(TaskPage.model_validate({"items": items, "next_cursor": next_cursor}))


@tasks_router.get(
    "/{task_id}", response_model=TaskResponse, responses=problem_responses(404), summary="Get a task"
)
async def get_task(task_id: uuid.UUID, user_id: CurrentUser, session: ReadSession) -> Response:
    return _json(_task(await service.get_task(session, user_id, task_id)))


@tasks_router.patch(
    "/{task_id}",
    response_model=TaskResponse,
    responses=problem_responses(404),
    summary="Change some fields (null clears description, due_at, tags, remind_before_minutes, recurrence)",
)
async def update_task(
    task_id: uuid.UUID, body: TaskUpdate, user_id: CurrentUser, session: Session
) -> Response:
    task = await service.update_task(session, user_id, task_id, body)
    return _json(_task(task))


@tasks_router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404),
    summary="Delete a task",
)
async def delete_task(task_id: uuid.UUID, user_id: CurrentUser, session: Session) -> Response:
    await service.delete_task(session, user_id, task_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@tasks_router.post(
    "/{task_id}/complete",
    response_model=TaskResponse,
    responses=problem_responses(404),
    summary="Mark completed (idempotent)",
)
async def complete_task(task_id: uuid.UUID, user_id: CurrentUser, session: Session) -> Response:
    task = await service.set_completed(session, user_id, task_id, True)
    return _json(_task(task))


@tasks_router.post(
    "/{task_id}/reopen",
    response_model=TaskResponse,
    responses=problem_responses(404),
    summary="Mark pending again (idempotent)",
)
async def reopen_task(task_id: uuid.UUID, user_id: CurrentUser, session: Session) -> Response:
    task = await service.set_completed(session, user_id, task_id, False)
    return _json(_task(task))


@internal_router.post(
    "/tasks/{task_id}/next-occurrence",
    response_model=TaskResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "Already created earlier; the existing occurrence", "model": TaskResponse},
        **problem_responses(401, 404, 409, 422),
    },
    summary="Create the next occurrence of a recurring task (Dapr service invocation only)",
)
async def next_occurrence(task_id: uuid.UUID, body: NextOccurrenceRequest, session: Session) -> Response:
    task, created = await service.create_next_occurrence(session, task_id, body)
    return _json(_task(task), status.HTTP_201_CREATED if created else status.HTTP_200_OK)
