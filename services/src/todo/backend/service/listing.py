"""Listing: one page of a user's tasks, filtered, searched, sorted and keyset-paginated."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, true, tuple_

from todo.backend.domain import (
    PRIORITY_RANK,
    Cursor,
    InvalidCursor,
    Priority,
    SortKey,
    SortOrder,
    Status,
    TagsMatch,
)
from todo.backend.models import Task
from todo.backend.service.events import SNAPSHOT_FIELDS
from todo.common.db import Database
from todo.common.errors import ProblemError


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


def _sort_value(task: Any, sort: SortKey) -> Any:
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


def _conditions(user_id: uuid.UUID, f: TaskFilter) -> list[ColumnElement[bool]]:
    """The WHERE conditions of the filter (full-text search: see ``list_tasks``)."""
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
        conditions.append(_after_cursor(_decoded_cursor(f)))
    return conditions


def _decoded_cursor(f: TaskFilter) -> Cursor:
    assert f.cursor is not None
    try:
        return Cursor.decode(f.cursor, f.sort, f.order)
    except InvalidCursor as exc:
        raise ProblemError(
            422,
            "validation-error",
            f"query.cursor: {exc}",
            errors=[{"field": "query.cursor", "message": str(exc), "type": "invalid_cursor"}],
        ) from None


def _order_by(f: TaskFilter) -> list[Any]:
    col = _sort_column(f.sort)
    direction = (lambda c: c.asc()) if f.order is SortOrder.asc else (lambda c: c.desc())
    order_by = [direction(col), direction(Task.id)]
    if f.sort is SortKey.due:
        order_by.insert(0, Task.due_at.is_(None).asc())
    return order_by


async def list_tasks(db: Database, user_id: uuid.UUID, f: TaskFilter) -> tuple[list[Any], str | None]:
    """One page of the user's tasks (rows of the SNAPSHOT_FIELDS columns); keyset pagination on
    (sort value, id), so pages stay consistent while tasks are added and each page costs an index
    range scan, not an OFFSET.

    Search uses PostgreSQL full text: a stored ``tsvector`` (english configuration) over title and
    description with a GIN index, queried with ``websearch_to_tsquery``. Unlike ILIKE it is indexed
    (no sequential scan as the table grows), matches word forms ("reports" finds "report"), and gives
    users quotes, ``or`` and ``-exclusion`` without any escaping of ``%``/``_``. The cost: no substring
    matches inside words, and english stop words alone find nothing."""
    conditions = _conditions(user_id, f)
    # Core rows on an autocommit connection, not ORM objects in a session: listing is read-only, and
    # the session and object loading cost more CPU than the query
    stmt = select(*_LIST_COLUMNS).where(and_(true(), *conditions)).order_by(*_order_by(f))
    async with db.autocommit_engine.connect() as conn:
        rows = list((await conn.execute(stmt.limit(f.limit + 1))).all())
    next_cursor = None
    if len(rows) > f.limit:
        rows = rows[: f.limit]
        last = rows[-1]
        next_cursor = Cursor(f.sort, f.order, _sort_value(last, f.sort), last.id).encode()
    return rows, next_cursor
