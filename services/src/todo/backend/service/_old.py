"""The backend's domain operations. Routes are thin wrappers around these functions.

Every change to a task happens under a row lock, increments ``version`` and queues its CloudEvent in
the outbox within the same transaction, so events of one task are published in version order.
"""

from __future__ import annotations

import asyncio
import ctypes
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select, true, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from todo.backend.domain import (
    PRIORITY_RANK,
    Cursor,
    InvalidCursor,
    Priority,
    SortKey,
    SortOrder,
    Status,
    TagsMatch,
    check_recurrence_fits,
)
from todo.backend.models import Outbox, Task, User
from todo.backend.schemas import NextOccurrenceRequest, TaskCreate, TaskUpdate
from todo.common.cloudevents import TASK_EVENT_TYPES, TOPIC_TASK_EVENTS, build_event, rfc3339
from todo.common.context import bind, event_extensions
from todo.common.db import Database, DriverStatement
from todo.common.errors import ProblemError
from todo.common.outbox import add_event

SOURCE = "/todo/backend"
SNAPSHOT_FIELDS = (
    "id",
    "user_id",
    "title",
    "description",
    "status",
    "priority",
    "tags",
    "due_at",
    "remind_before_minutes",
    "recurrence",
    "completed_at",
    "version",
    "series_id",
    "occurrence",
    "previous_occurrence_id",
    "series_anchor_at",
    "created_at",
    "updated_at",
)
#: Fields a client can change; changed_fields of an update lists those that really changed.
EDITABLE_FIELDS = (
    "title",
    "description",
    "priority",
    "tags",
    "due_at",
    "remind_before_minutes",
    "recurrence",
)


def _return_large_blocks_to_the_os() -> None:
    """Each argon2 hash allocates 19 MiB. glibc raises its mmap threshold after the first such block
    is freed, so later ones come from per-thread heaps and stay resident (~100 MB after a few logins).
    A fixed threshold keeps large blocks mmap-ed: they go back to the OS when freed."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_mmap_threshold = -3
    libc.mallopt(m_mmap_threshold, 128 * 1024)


_return_large_blocks_to_the_os()

# OWASP's minimum argon2id profile: 19 MiB, 2 passes. Hashing runs in a thread, off the event loop.
_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
_DUMMY_HASH = _hasher.hash("not-a-real-password")


# ----------------------------------------------------------------------------------------------
# Users


#: Holds one of the few password-hash slots for the duration of a hash (AuthLimits.hashing); the
#: HTTP routes pass one, scripts calling these functions directly need none.
HashSlot = Callable[[], AbstractAsyncContextManager[None]]


async def register_user(
    session: AsyncSession, email: str, password: str, hash_slot: HashSlot = nullcontext
) -> User:
    async with hash_slot():
        password_hash = await asyncio.to_thread(_hasher.hash, password)
    user = User(id=uuid.uuid4(), email=email, password_hash=password_hash, created_at=datetime.now(UTC))
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise ProblemError(
            409, "email-already-registered", "An account with this e-mail already exists."
        ) from None
    bind(user_id=user.id)
    return user


async def authenticate(
    session: AsyncSession, email: str, password: str, hash_slot: HashSlot = nullcontext
) -> User:
    """The user with these credentials; unknown e-mail and bad password get the same 401 and work.

    The hash slot is taken before the user is read: a login waiting for a slot holds no database
    connection, so a flood of logins cannot drain the pool that every other route needs."""
    async with hash_slot():
        user = (
            await session.execute(select(User).where(User.email == email.strip().lower()))
        ).scalar_one_or_none()
        stored = user.password_hash if user else _DUMMY_HASH
        try:
            await asyncio.to_thread(_hasher.verify, stored, password)
            ok = user is not None
        except (VerificationError, InvalidHashError):
            ok = False
    if not ok or user is None:
        raise ProblemError(401, "invalid-credentials", "E-mail or password is wrong.")
    user.last_login_at = datetime.now(UTC)
    await session.commit()
    bind(user_id=user.id)
    return user


# ----------------------------------------------------------------------------------------------
# Snapshots and events


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
    ``changed_fields``)."""
    values = _snapshot_items(task) if isinstance(task, Mapping) else _snapshot_attributes(task)
    return {name: _json_value(value) for name, value in zip(SNAPSHOT_FIELDS, values, strict=True)}


def task_event(task: Task | Mapping[str, Any], kind: str, changed_fields: list[str]) -> dict[str, Any]:
    """The CloudEvent of a change: the full snapshot plus ``changed_fields``."""
    return snapshot_event(snapshot(task), kind, changed_fields)


def snapshot_event(state: dict[str, Any], kind: str, changed_fields: list[str]) -> dict[str, Any]:
    """The CloudEvent of a change from the task's snapshot (which is not changed)."""
    data = {**state, "changed_fields": changed_fields}
    return build_event(TASK_EVENT_TYPES[kind], SOURCE, state["id"], data, extensions=event_extensions())


def queue_event(session: AsyncSession, task: Task, kind: str, changed_fields: list[str]) -> dict[str, Any]:
    event = task_event(task, kind, changed_fields)
    add_event(session, Outbox, TOPIC_TASK_EVENTS, event, partition_key=str(task.id))
    return event


# ----------------------------------------------------------------------------------------------
# Tasks


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
    now = datetime.now(UTC)
    task_id = uuid.uuid4()
    task = {
        "id": task_id,
        "user_id": user_id,
        "title": body.title,
        "description": body.description,
        "status": Status.pending.value,
        "priority": body.priority.value,
        "tags": body.tags,
        "due_at": body.due_at,
        "remind_before_minutes": body.remind_before_minutes,
        "recurrence": body.recurrence.model_dump(mode="json") if body.recurrence else None,
        "completed_at": None,
        "version": 1,
        "series_id": task_id,
        "occurrence": 1,
        "previous_occurrence_id": None,
        "series_anchor_at": body.due_at,
        "created_at": now,
        "updated_at": now,
    }
    bind(task_id=task_id)
    state = snapshot(task)
    event = snapshot_event(state, "created", list(SNAPSHOT_FIELDS))
    params = {f"t_{name}": value for name, value in task.items()}
    params.update(
        o_event_id=uuid.UUID(event["id"]),
        o_topic=TOPIC_TASK_EVENTS,
        o_event_type=event["type"],
        o_partition_key=str(task_id),
        o_payload=event,
    )
    await db.driver_execute(_CREATE_WITH_EVENT, params)
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
    changed = [name for name, value in body.changes().items() if getattr(task, name) != value]
    if not changed:
        await session.commit()  # releases the row lock; commit (unlike rollback) keeps attributes loaded
        return task
    for name in changed:
        setattr(task, name, body.changes()[name])
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
    rule = source.recurrence
    if not rule:
        raise ProblemError(409, "not-recurring", "The task has no recurrence.")
    if rule.get("count") is not None and source.occurrence >= rule["count"]:
        raise ProblemError(409, "series-ended", "The series has reached its count.")
    if rule.get("until") and body.due_at and body.due_at > datetime.fromisoformat(rule["until"]):
        raise ProblemError(409, "series-ended", "The next due date is after the series' end.")
    now = datetime.now(UTC)
    new_id = uuid.uuid4()
    values = {
        "id": new_id,
        "user_id": source.user_id,
        "title": source.title,
        "description": source.description,
        "status": Status.pending.value,
        "priority": source.priority,
        "tags": list(source.tags),
        "due_at": body.due_at,
        "remind_before_minutes": source.remind_before_minutes,
        "recurrence": source.recurrence,
        "completed_at": None,
        "version": 1,
        "series_id": source.series_id,
        "occurrence": source.occurrence + 1,
        "previous_occurrence_id": source.id,
        "series_anchor_at": source.series_anchor_at or body.series_anchor_at,
        "created_at": now,
        "updated_at": now,
    }
    inserted = (
        await session.execute(
            insert(Task)
            .values(**values)
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
    task = (await session.execute(select(Task).where(Task.id == new_id))).scalar_one()
    queue_event(session, task, "created", list(SNAPSHOT_FIELDS))
    await session.commit()
    return task, True


async def _occurrence_after(session: AsyncSession, source_id: uuid.UUID) -> Task | None:
    stmt = select(Task).where(Task.previous_occurrence_id == source_id)
    return (await session.execute(stmt)).scalar_one_or_none()


# ----------------------------------------------------------------------------------------------
# Listing


@dataclass
class TaskFilter:
    status: Status | None = None
    priority: list[Priority] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    tags_match: TagsMatch = TagsMatch.all
    due_from: datetime | None = None
    due_to: datetime | None = None
    overdue: bool | None = None
    q: str | None = None
    sort: SortKey = SortKey.created
    order: SortOrder = SortOrder.desc
    limit: int = 20
    cursor: str | None = None


_LIST_COLUMNS = tuple(Task.__table__.c[name] for name in SNAPSHOT_FIELDS)


def _sort_column(sort: SortKey) -> Any:
    return {
        SortKey.priority: Task.priority_rank,
        SortKey.due: Task.due_at,
        SortKey.created: Task.created_at,
        SortKey.updated: Task.updated_at,
    }[sort]


def _sort_value(task: Task, sort: SortKey) -> Any:
    if sort is SortKey.priority:
        return PRIORITY_RANK[Priority(task.priority)]
    return getattr(task, _sort_column(sort).key)


def _after_cursor(cursor: Cursor) -> ColumnElement[bool]:
    col = _sort_column(cursor.sort)
    asc = cursor.order is SortOrder.asc
    if cursor.sort is SortKey.due:
        # tasks without a due date come last in both orders
        if cursor.value is None:
            return and_(Task.due_at.is_(None), Task.id > cursor.task_id if asc else Task.id < cursor.task_id)
        beyond = (
            tuple_(Task.due_at, Task.id) > tuple_(cursor.value, cursor.task_id)
            if asc
            else tuple_(Task.due_at, Task.id) < tuple_(cursor.value, cursor.task_id)
        )
        return or_(Task.due_at.is_(None), beyond)
    if asc:
        return tuple_(col, Task.id) > tuple_(cursor.value, cursor.task_id)
    return tuple_(col, Task.id) < tuple_(cursor.value, cursor.task_id)


async def list_tasks(db: Database, user_id: uuid.UUID, f: TaskFilter) -> tuple[list[Any], str | None]:
    """One page of the user's tasks; keyset pagination on (sort value, id), so pages stay consistent
    while tasks are added and each page costs an index range scan, not an OFFSET.

    Search uses PostgreSQL full text: a stored ``tsvector`` (english configuration) over title and
    description with a GIN index, queried with ``websearch_to_tsquery``. Unlike ILIKE it is indexed
    (no sequential scan as the table grows), matches word forms ("reports" finds "report"), and gives
    users quotes, ``or`` and ``-exclusion`` without any escaping of ``%``/``_``. The cost: no substring
    matches inside words, and english stop words alone find nothing."""
    conditions: list[ColumnElement[bool]] = [Task.user_id == user_id]
    if f.status is not None:
        conditions.append(Task.status == f.status.value)
    if f.priority:
        conditions.append(Task.priority.in_([p.value for p in f.priority]))
    if f.tags:
        conditions.append(
            Task.tags.contains(f.tags) if f.tags_match is TagsMatch.all else Task.tags.overlap(f.tags)
        )
    if f.due_from is not None:
        conditions.append(Task.due_at >= f.due_from)
    if f.due_to is not None:
        conditions.append(Task.due_at <= f.due_to)
    if f.overdue is not None:
        is_overdue = and_(Task.status == Status.pending.value, Task.due_at < func.now())
        conditions.append(is_overdue if f.overdue else or_(Task.due_at.is_(None), ~is_overdue))
    if f.q:
        conditions.append(Task.search.op("@@")(func.websearch_to_tsquery("english", f.q)))
    if f.cursor:
        try:
            cursor = Cursor.decode(f.cursor, f.sort, f.order)
        except InvalidCursor as exc:
            raise ProblemError(
                422,
                "validation-error",
                f"query.cursor: {exc}",
                errors=[{"field": "query.cursor", "message": str(exc), "type": "invalid_cursor"}],
            ) from None
        conditions.append(_after_cursor(cursor))
    col = _sort_column(f.sort)
    direction = (lambda c: c.asc()) if f.order is SortOrder.asc else (lambda c: c.desc())
    order_by = [direction(col), direction(Task.id)]
    if f.sort is SortKey.due:
        order_by.insert(0, Task.due_at.is_(None).asc())
    # Core rows on an autocommit connection, not ORM objects in a session: listing is read-only, and
    # the session and object loading cost more CPU than the query
    stmt = select(*_LIST_COLUMNS).where(and_(true(), *conditions)).order_by(*order_by)
    async with db.autocommit_engine.connect() as conn:
        rows = list((await conn.execute(stmt.limit(f.limit + 1))).all())
    next_cursor = None
    if len(rows) > f.limit:
        rows = rows[: f.limit]
        last = rows[-1]
        next_cursor = Cursor(f.sort, f.order, _sort_value(last, f.sort), last.id).encode()
    return rows, next_cursor
