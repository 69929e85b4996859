"""What the audit service does with one task event."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from todo.audit.store import UnusableEvent, record
from todo.common.cloudevents import TASK_EVENT_TYPES, CloudEvent
from todo.common.consumer import PoisonEvent
from todo.common.metrics import AUDIT_WRITES

AUDITED_TYPES = frozenset(TASK_EVENT_TYPES.values())


async def audit_task_event(session: AsyncSession, event: CloudEvent) -> None:
    if event.type not in AUDITED_TYPES:
        raise PoisonEvent(f"unexpected event type {event.type!r} on task-events")
    envelope = {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "specversion": event.specversion,
        "subject": event.subject,
        "time": event.time.isoformat() if event.time else None,
        **{k: v for k, v in event.extensions.items() if k not in ("topic", "pubsubname")},
    }
    try:
        written = await record(session, event, envelope)
    except UnusableEvent as exc:
        raise PoisonEvent(str(exc)) from None
    if written:
        AUDIT_WRITES.labels(event.type).inc()
