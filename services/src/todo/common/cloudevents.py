"""CloudEvents 1.0 structured JSON: building events and parsing what Dapr delivers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SPECVERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"
TASK_EVENT_TYPES = {
    "created": "com.todo.task.created",
    "updated": "com.todo.task.updated",
    "completed": "com.todo.task.completed",
    "deleted": "com.todo.task.deleted",
}
REMINDER_DUE = "com.todo.reminder.due"
TOPIC_TASK_EVENTS = "task-events"
TOPIC_REMINDERS = "reminders"


def dead_letter_topic(topic: str) -> str:
    return f"{topic}-dlq"


class InvalidEvent(ValueError):
    """The body is not a usable CloudEvent (a poison message)."""


def rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("event times must be time-zone aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def build_event(
    event_type: str,
    source: str,
    subject: str,
    data: dict[str, Any],
    *,
    event_id: str | None = None,
    time: datetime | None = None,
    extensions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A structured-mode CloudEvent ready to serialise as JSON (``data`` must be JSON-safe)."""
    event = {
        "specversion": SPECVERSION,
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "subject": subject,
        "time": rfc3339(time or datetime.now(UTC)),
        "datacontenttype": "application/json",
        "data": data,
    }
    if extensions:
        for key, value in extensions.items():
            if not key.isalnum() or not key.islower() or key in event:
                raise ValueError(f"invalid CloudEvents extension name: {key!r}")
            event[key] = value
    return event


@dataclass(frozen=True, slots=True)
class CloudEvent:
    id: str
    source: str
    type: str
    specversion: str
    subject: str | None
    time: datetime | None
    data: Any
    extensions: dict[str, Any] = field(default_factory=dict)

    @property
    def topic(self) -> str | None:
        """Dapr adds ``topic`` (and ``pubsubname``, ``traceparent``) when it delivers an event."""
        return self.extensions.get("topic")

    @property
    def traceparent(self) -> str | None:
        return self.extensions.get("traceparent")


_CORE = {
    "id",
    "source",
    "type",
    "specversion",
    "subject",
    "time",
    "data",
    "data_base64",
    "datacontenttype",
    "dataschema",
}


def _parse_time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InvalidEvent("time must be an RFC 3339 string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent("time is not RFC 3339") from None
    if moment.tzinfo is None:
        raise InvalidEvent("time has no offset")
    return moment


def parse_event(body: Any) -> CloudEvent:
    """Validate a structured CloudEvent (as delivered by Dapr) and return it; raise InvalidEvent."""
    if not isinstance(body, dict):
        raise InvalidEvent("a CloudEvent must be a JSON object")
    for attr in ("id", "source", "type", "specversion"):
        value = body.get(attr)
        if not isinstance(value, str) or not value:
            raise InvalidEvent(f"required attribute {attr!r} is missing or not a string")
    if body["specversion"] != SPECVERSION:
        raise InvalidEvent(f"unsupported specversion {body['specversion']!r}")
    subject = body.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise InvalidEvent("subject must be a string")
    return CloudEvent(
        id=body["id"],
        source=body["source"],
        type=body["type"],
        specversion=body["specversion"],
        subject=subject,
        time=_parse_time(body.get("time")),
        data=body.get("data"),
        extensions={k: v for k, v in body.items() if k not in _CORE},
    )
