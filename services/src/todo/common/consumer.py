"""Idempotent event consumption for Dapr pub/sub subscriptions.

The processed event id is inserted into the consumer's own table in the SAME transaction as the
handler's effect, so an event is applied exactly once however often Dapr delivers it.

Outcomes (Dapr's subscriber contract):
- SUCCESS (HTTP 200 ``{"status": "SUCCESS"}``): handled, a duplicate, or poison moved to ``<topic>-dlq``.
- RETRY (HTTP 503 ``{"status": "RETRY"}``): a transient failure; Dapr redelivers (resiliency policy).
- DROP (HTTP 200 ``{"status": "DROP"}``): Dapr drops the message (to its own dead-letter topic if one
  is configured on the subscription); used only when even the DLQ publish is impossible to attempt.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import DateTime, String, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from todo.common.cloudevents import CloudEvent, InvalidEvent, build_event, dead_letter_topic, parse_event
from todo.common.context import bind, bind_event
from todo.common.dapr import PUBSUB_NAME, DaprClient
from todo.common.db import Database
from todo.common.logging import get_logger
from todo.common.metrics import EVENT_END_TO_END, EVENT_PROCESSING, EVENTS_CONSUMED, EVENTS_DEAD_LETTERED

_log = get_logger("todo.consumer")


class EventStatus(StrEnum):
    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


class PoisonEvent(Exception):
    """Raise from a handler when the event can never be processed (it goes to the DLQ)."""


class ProcessedEventMixin:
    """``class ProcessedEvent(ProcessedEventMixin, Base): __tablename__ = "processed_events"``."""

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    topic: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(200))
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


#: A handler applies one event inside the given transaction. It may return an async callable that
#: runs after the commit (e.g. a WebSocket push); its failures are logged, not retried.
Handler = Callable[[AsyncSession, CloudEvent], Awaitable[Callable[[], Awaitable[None]] | None]]


@dataclass
class EventConsumer:
    db: Database
    processed_model: type[ProcessedEventMixin]
    dapr: DaprClient
    topic: str
    source: str  # this service's CloudEvents source, e.g. "/todo/audit" (used for DLQ wrappers)

    async def handle(self, body: bytes, handler: Handler) -> EventStatus:
        start = time.perf_counter()
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError:
            return await self._poison(None, body, "body is not JSON")
        try:
            event = parse_event(raw)
        except InvalidEvent as exc:
            return await self._poison(None, raw, str(exc))
        bind_event(event)
        bind(event_id=event.id, event_type=event.type)
        if event.subject:
            bind(task_id=event.subject)
        after_commit = None
        try:
            async with self.db.transaction() as session:
                inserted = (
                    await session.execute(
                        insert(self.processed_model)
                        .values(event_id=event.id, topic=self.topic, event_type=event.type)
                        .on_conflict_do_nothing()
                        .returning(self.processed_model.event_id)
                    )
                ).first()
                if inserted is None:
                    EVENTS_CONSUMED.labels(self.topic, event.type, "duplicate").inc()
                    _log.info("duplicate event ignored")
                    return EventStatus.SUCCESS
                after_commit = await handler(session, event)
        except PoisonEvent as exc:
            return await self._poison(event, raw, str(exc))
        except Exception as exc:
            EVENTS_CONSUMED.labels(self.topic, event.type, "failed").inc()
            _log.warning("event handling failed; Dapr will redeliver", error=f"{type(exc).__name__}: {exc}")
            return EventStatus.RETRY
        EVENTS_CONSUMED.labels(self.topic, event.type, "processed").inc()
        EVENT_PROCESSING.labels(self.topic, event.type).observe(time.perf_counter() - start)
        if event.time is not None:
            EVENT_END_TO_END.labels(self.topic, event.type).observe(
                max(0.0, (datetime.now(UTC) - event.time).total_seconds())
            )
        if after_commit is not None:
            try:
                await after_commit()
            except Exception as exc:
                _log.warning("after-commit action failed", error=f"{type(exc).__name__}: {exc}")
        return EventStatus.SUCCESS

    async def _poison(self, event: CloudEvent | None, raw: Any, reason: str) -> EventStatus:
        event_type = event.type if event else "unknown"
        EVENTS_CONSUMED.labels(self.topic, event_type, "poison").inc()
        dlq = dead_letter_topic(self.topic)
        if event is not None and isinstance(raw, dict):
            payload = {k: v for k, v in raw.items() if k not in ("topic", "pubsubname")}
            payload["deadletterreason"] = reason[:500]
            key = event.subject
        else:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else orjson.dumps(raw).decode()
            payload = build_event(
                "com.todo.deadletter",
                self.source,
                "unparseable",
                {"reason": reason[:500], "body": text[:100_000]},
            )
            key = None
        try:
            await self.dapr.publish(dlq, payload, partition_key=key)
        except Exception as exc:
            _log.error("dead-lettering failed; Dapr will redeliver", error=str(exc), reason=reason)
            return EventStatus.RETRY
        EVENTS_DEAD_LETTERED.labels(self.topic, event_type).inc()
        _log.warning("poison event dead-lettered", reason=reason, dlq=dlq)
        return EventStatus.SUCCESS

    def endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[JSONResponse]]:
        """A FastAPI endpoint for the subscription route: ``app.post("/events/task-events")(...)``."""

        async def receive_event(request: Request) -> JSONResponse:
            status = await self.handle(await request.body(), handler)
            return dapr_response(status)

        return receive_event


def dapr_response(status: EventStatus) -> JSONResponse:
    return JSONResponse({"status": status.value}, status_code=503 if status is EventStatus.RETRY else 200)


@dataclass(frozen=True)
class Subscription:
    topic: str
    route: str
    pubsub: str = PUBSUB_NAME
    dead_letter_topic: str | None = None  # Dapr's own DLQ after its retries; defaults to <topic>-dlq


def add_subscriptions(app: FastAPI, subscriptions: list[Subscription]) -> None:
    """Serve Dapr's programmatic ``GET /dapr/subscribe``."""
    body = [
        {
            "pubsubname": s.pubsub,
            "topic": s.topic,
            "route": s.route,
            "deadLetterTopic": s.dead_letter_topic or dead_letter_topic(s.topic),
        }
        for s in subscriptions
    ]

    @app.get("/dapr/subscribe", include_in_schema=False)
    async def dapr_subscribe() -> list[dict[str, Any]]:
        return body


def new_event_id() -> str:
    return str(uuid.uuid4())
