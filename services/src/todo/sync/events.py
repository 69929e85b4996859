"""Turning a task or reminder event into the message a WebSocket client receives."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from todo.common.cloudevents import REMINDER_DUE, TASK_EVENT_TYPES, CloudEvent, rfc3339

KNOWN_TYPES = frozenset({*TASK_EVENT_TYPES.values(), REMINDER_DUE})


class UnroutableEvent(ValueError):
    """An event with no user to deliver to (poison)."""


def client_message(event: CloudEvent) -> tuple[str, dict[str, Any]]:
    """(user id, message) for an event: ``{type, event_id, time, version, task}``."""
    data = event.data
    if not isinstance(data, dict):
        raise UnroutableEvent("data must be an object")
    user_id = data.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        raise UnroutableEvent("data.user_id is missing")
    short_type = event.type.removeprefix("com.todo.")
    message: dict[str, Any] = {
        "type": short_type,
        "event_id": event.id,
        "time": rfc3339(event.time) if event.time else None,
        "version": data.get("version"),
    }
    if event.type == REMINDER_DUE:
        task = dict(data.get("task") or {})
        task.setdefault("id", data.get("task_id"))
        message["task"] = task
        message["reminder"] = {
            "fire_at": data.get("fire_at"),
            "fired_at": data.get("fired_at"),
            "late": bool(data.get("late")),
        }
    else:
        message["task"] = {k: v for k, v in data.items() if k != "changed_fields"}
        if "changed_fields" in data:
            message["changed_fields"] = data["changed_fields"]
    return user_id, message


class RecentIds:
    """A bounded set of recently pushed event ids: a redelivered event is not pushed twice."""

    def __init__(self, size: int = 20000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, event_id: str) -> bool:
        """True if ``event_id`` was seen before; remembers it otherwise."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return True
        self._ids[event_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return False

    def forget(self, event_ids: list[str]) -> None:
        for event_id in event_ids:
            self._ids.pop(event_id, None)


class RecentIdsLedger:
    """The sync service's ledger (``todo.common.consumer.Ledger``): pushes are not transactional, so
    the events of this replica's recent pushes stand in for a processed-events table. A delivery
    that fails forgets the ids it claimed, so its one-by-one retry still pushes them."""

    def __init__(self, recent: RecentIds) -> None:
        self.recent = recent

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[list[str]]:
        claimed: list[str] = []
        try:
            yield claimed
        except BaseException:
            self.recent.forget(claimed)
            raise

    async def claim(self, claimed: list[str], events: list[CloudEvent]) -> set[str]:
        new = {e.id for e in events if not self.recent.seen(e.id)}
        claimed.extend(new)
        return new
