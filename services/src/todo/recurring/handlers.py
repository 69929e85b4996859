"""What the recurring-task service does with one task event: ask the backend for the next occurrence."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from todo.common.cloudevents import TASK_EVENT_TYPES, CloudEvent, rfc3339
from todo.common.consumer import PoisonEvent
from todo.common.dapr import DaprClient, DaprError
from todo.common.logging import get_logger
from todo.recurring.recurrence import (
    InvalidRecurrence,
    NextOccurrence,
    Recurrence,
    next_occurrence,
    parse_time,
)

#: The backend's Dapr app id (the recurring service's BACKEND_APP_ID setting; the default everywhere
#: but the test bed, whose sessions each run their own backend on one host, docs/development.md).
BACKEND_APP_ID = "backend"
_log = get_logger("todo.recurring")


class BackendUnavailable(RuntimeError):
    """The backend (or the sidecar path to it) failed transiently: Dapr should redeliver."""


def plan_next(task: dict[str, Any], event_time: datetime | None) -> NextOccurrence | None:
    """The next occurrence for a completed task snapshot, ``None`` if it is not recurring or has ended."""
    try:
        rule = Recurrence.from_dict(task.get("recurrence"))
        if rule is None:
            return None
        completed_raw = task.get("completed_at")
        completed_at = parse_time(completed_raw) if completed_raw else (event_time or datetime.now(UTC))
        due_at = parse_time(task["due_at"]) if task.get("due_at") else None
        anchor = parse_time(task["series_anchor_at"]) if task.get("series_anchor_at") else None
        occurrence = 1 if task.get("occurrence") is None else task["occurrence"]
        if not isinstance(occurrence, int) or occurrence < 1:
            raise InvalidRecurrence("occurrence must be a positive integer")
        return next_occurrence(
            rule, due_at=due_at, series_anchor_at=anchor, completed_at=completed_at, occurrence=occurrence
        )
    except OverflowError as exc:  # the series runs past year 9999 (datetime's last year)
        raise PoisonEvent(f"the next occurrence is past the last representable date: {exc}") from None
    except (InvalidRecurrence, TypeError, ValueError, AttributeError) as exc:
        raise PoisonEvent(f"cannot evaluate the recurrence: {exc}") from None


class RecurringTaskHandler:
    def __init__(self, dapr: DaprClient, backend_app_id: str = BACKEND_APP_ID) -> None:
        self.dapr = dapr
        self.backend_app_id = backend_app_id

    async def __call__(self, session: AsyncSession, event: CloudEvent) -> None:
        if event.type != TASK_EVENT_TYPES["completed"]:
            return
        task = event.data
        if not isinstance(task, dict) or not task.get("id"):
            raise PoisonEvent("data must be the task snapshot with its id")
        planned = plan_next(task, event.time)
        if planned is None:
            return
        await self.request_next(str(task["id"]), planned)

    async def request_next(self, task_id: str, planned: NextOccurrence) -> None:
        body = {"due_at": rfc3339(planned.due_at), "series_anchor_at": rfc3339(planned.series_anchor_at)}
        try:
            response = await self.dapr.invoke(
                self.backend_app_id, f"/internal/tasks/{task_id}/next-occurrence", json=body
            )
        except DaprError as exc:
            raise BackendUnavailable(str(exc)) from None
        status = response.status_code
        if status in (200, 201):
            _log.info("next occurrence ensured", due_at=body["due_at"], created=status == 201)
            return
        if status in (404, 410):
            if _problem_type(response) == "not-found":
                # The completed task was deleted before we got to it: nothing left to recur.
                _log.info("completed task is gone; no next occurrence", status=status)
                return
            # Not the backend's answer (e.g. the sidecar could not route the call yet, as right
            # after a restart): dropping the event here would lose the next occurrence.
            raise BackendUnavailable(f"HTTP {status}, not the backend's not-found: {response.text[:200]}")
        if status == 409:
            problem = _problem_type(response)
            if problem in ("not-recurring", "series-ended"):
                # The backend's own rule check says the series is over: nothing to create.
                _log.info("backend says the series has ended", problem=problem)
                return
            raise BackendUnavailable(f"backend conflict ({problem}); retrying")
        if status in (400, 422):
            raise PoisonEvent(f"backend refused the next occurrence: HTTP {status} {response.text[:300]}")
        raise BackendUnavailable(f"backend answered HTTP {status}")


def _problem_type(response: Any) -> str:
    try:
        return str(response.json().get("type", "")).rstrip("/").rsplit("/", 1)[-1]
    except Exception:
        return ""
