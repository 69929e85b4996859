"""Idempotent event consumption for Dapr pub/sub subscriptions.

The processed event id is inserted into the consumer's own table in the SAME transaction as the
handler's effect, so an event is applied exactly once however often Dapr delivers it.

Subscriptions use Dapr's bulk subscribe: the sidecar delivers up to ``BULK_MAX_MESSAGES`` events of
one partition in one request, and the app answers a status per entry (``deliver_each``). Entries are
handled one after the other, in partition order; once an entry of a partition key asks for a retry,
the later entries of that key in the same request are not handled and ask for a retry too, so a
redelivery cannot put a task's events out of order. A single (non-bulk) delivery is accepted as well.
A bulk and a single delivery go through the same core (``EventConsumer._apply``); a service wires a
subscription with one call, ``subscribe(app, topic, handler, processed=..., event_types=...)``.

Outcomes (Dapr's subscriber contract):
- SUCCESS (HTTP 200 ``{"status": "SUCCESS"}``): handled, a duplicate, or poison moved to ``<topic>-dlq``.
- RETRY (HTTP 503 ``{"status": "RETRY"}``): a transient failure; Dapr redelivers (resiliency policy).
- DROP (HTTP 200 ``{"status": "DROP"}``): Dapr drops the message (to its own dead-letter topic, without
  a reason and without a retry if that publish fails); the services never answer it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, cast

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import DateTime, String, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from todo.common.auth import require_app_token
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


AfterCommit = Callable[[], Awaitable[None]]
#: A handler applies one event inside the ledger's transaction (``session`` is None for a ledger
#: without a database). It may return an async callable that runs after the commit (e.g. a WebSocket
#: push); its failures are logged, not retried.
Handler = Callable[[Any, CloudEvent], Awaitable[AfterCommit | None]]


class Skipped(Exception):  # noqa: N818 - an outcome, not an error
    """Raise from a handler to acknowledge an event without applying it; counted under ``label``."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.label = label


class Ledger(Protocol):
    """Where a consumer records the ids of the events it has applied."""

    def transaction(self) -> AbstractAsyncContextManager[Any]: ...

    async def claim(self, session: Any, events: list[CloudEvent]) -> set[str]:
        """Record the events' ids in the transaction; return the ids not recorded before."""
        ...


@dataclass(frozen=True)
class DatabaseLedger:
    """The processed ids in the service's own table, in the same transaction as the handler's effect."""

    db: Database
    model: type[ProcessedEventMixin]
    topic: str

    def transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        return self.db.transaction()

    async def claim(self, session: AsyncSession, events: list[CloudEvent]) -> set[str]:
        rows = [{"event_id": e.id, "topic": self.topic, "event_type": e.type} for e in events]
        statement = insert(self.model).values(rows).on_conflict_do_nothing().returning(self.model.event_id)
        return set((await session.execute(statement)).scalars())


@dataclass
class EventConsumer:
    """One subscription's consumer: every delivered event, alone or in a bulk, goes through
    ``_apply`` (processed ids claimed, context bound, handler run, metrics counted)."""

    dapr: DaprClient
    topic: str
    source: str  # this service's CloudEvents source, e.g. "/todo/audit" (used for DLQ wrappers)
    handler: Handler
    ledger: Ledger

    #: Event types the handler acts on; others are acknowledged without touching the ledger.
    #: ``None``: every type.
    event_types: frozenset[str] | None = None

    async def handle(self, body: bytes | str | dict[str, Any]) -> EventStatus:
        """Apply one delivered event (its JSON text, or already decoded) exactly once."""
        if isinstance(body, dict):
            raw: Any = body
        else:
            try:
                raw = orjson.loads(body)
            except orjson.JSONDecodeError:
                return await self._poison(None, body, "body is not JSON")
        try:
            event = parse_event(raw)
        except InvalidEvent as exc:
            return await self._poison(None, raw, str(exc))
        _bind(event)
        try:
            await self._apply([event])
        except PoisonEvent as exc:
            return await self._poison(event, raw, str(exc))
        except ArithmeticError as exc:
            # Arithmetic on the event's own data (a date past year 9999): every redelivery fails alike.
            return await self._poison(event, raw, f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            EVENTS_CONSUMED.labels(self.topic, event.type, "failed").inc()
            _log.warning("event handling failed; Dapr will redeliver", error=f"{type(exc).__name__}: {exc}")
            return EventStatus.RETRY
        return EventStatus.SUCCESS

    async def handle_all(self, bodies: list[Any]) -> list[EventStatus] | None:
        """Apply the events of one bulk delivery in ONE transaction (their processed ids in one
        statement), in order. This is the fast path: per-event transactions cost round trips and
        session work that dominate a consumer's CPU. Returns None, having changed nothing, when an
        event does not parse or any handler fails: the caller then handles them one by one
        (``handle``), which gives each its own outcome (poison to the DLQ, retry, ...)."""
        try:
            events = [parse_event(body) for body in bodies if isinstance(body, dict)]
        except InvalidEvent:
            return None
        if len(events) != len(bodies):
            return None
        try:
            await self._apply(events)
        except Exception as exc:  # any failure: nothing was committed; one by one decides
            _log.info("bulk delivery handled one event at a time", reason=f"{type(exc).__name__}: {exc}")
            return None
        return [EventStatus.SUCCESS] * len(events)

    async def _apply(self, events: list[CloudEvent]) -> None:
        """Apply ``events`` in one transaction of the ledger, each at most once, then count them
        and run their after-commit actions. Raises what a handler raised (nothing committed)."""
        start = time.perf_counter()
        wanted = [e for e in events if not self._ignores(e)]
        outcomes: dict[int, str] = {}
        after_commit: list[AfterCommit] = []
        if wanted:
            async with self.ledger.transaction() as session:
                new_ids = await self.ledger.claim(session, wanted)
                for event in wanted:
                    if event.id not in new_ids:
                        continue  # processed before, or earlier in this delivery
                    new_ids.discard(event.id)
                    _bind(event)
                    try:
                        action = await self.handler(session, event)
                    except Skipped as skipped:
                        outcomes[id(event)] = skipped.label
                        continue
                    outcomes[id(event)] = "processed"
                    if action is not None:
                        after_commit.append(action)
        self._count(events, outcomes, time.perf_counter() - start)
        await _run_after_commit(after_commit)

    def _ignores(self, event: CloudEvent) -> bool:
        return self.event_types is not None and event.type not in self.event_types

    def _count(self, events: list[CloudEvent], outcomes: dict[int, str], elapsed: float) -> None:
        now = datetime.now(UTC)
        for event in events:
            outcome = "ignored" if self._ignores(event) else outcomes.get(id(event), "duplicate")
            EVENTS_CONSUMED.labels(self.topic, event.type, outcome).inc()
            if outcome == "duplicate" and len(events) == 1:
                _log.info("duplicate event ignored")
            if outcome != "processed":
                continue
            EVENT_PROCESSING.labels(self.topic, event.type).observe(elapsed)
            if event.time is not None:
                EVENT_END_TO_END.labels(self.topic, event.type).observe(
                    max(0.0, (now - event.time).total_seconds())
                )

    async def _poison(self, event: CloudEvent | None, raw: Any, reason: str) -> EventStatus:
        event_type = event.type if event else "unknown"
        EVENTS_CONSUMED.labels(self.topic, event_type, "poison").inc()
        dlq = dead_letter_topic(self.topic)
        if event is not None and isinstance(raw, dict):
            payload = {k: v for k, v in raw.items() if k not in ("topic", "pubsubname")}
            payload["deadletterreason"] = reason[:500]
            key = event.subject
        else:
            if isinstance(raw, bytes):
                text = raw.decode("utf-8", "replace")
            else:
                text = raw if isinstance(raw, str) else orjson.dumps(raw).decode()
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

    async def receive(self, request: Request) -> JSONResponse:
        """The subscription route's endpoint: one Dapr delivery, bulk or single."""
        return await deliver_each(await request.body(), self.handle, self.handle_all)


def _bind(event: CloudEvent) -> None:
    """The log context of one event: its request and trace ids, its id, type and task."""
    bind_event(event)
    bind(event_id=event.id, event_type=event.type)
    if event.subject:
        bind(task_id=event.subject)


async def _run_after_commit(actions: list[Callable[[], Awaitable[None]]]) -> None:
    """Run what handlers asked to do after their commit; a failure is logged, never retried."""
    for action in actions:
        try:
            await action()
        except Exception as exc:
            _log.warning("after-commit action failed", error=f"{type(exc).__name__}: {exc}")


def dapr_response(status: EventStatus) -> JSONResponse:
    return JSONResponse({"status": status.value}, status_code=503 if status is EventStatus.RETRY else 200)


#: Bulk subscribe: at most this many events per request, and at most this long a wait (ms) for a
#: request to fill. The wait adds to every event's latency when traffic is light, so it is short.
BULK_MAX_MESSAGES = 100
BULK_MAX_AWAIT_MS = 100


async def deliver_each(
    body: bytes,
    deliver: Callable[[bytes | str | dict[str, Any]], Awaitable[EventStatus]],
    deliver_all: Callable[[list[Any]], Awaitable[list[EventStatus] | None]] | None = None,
) -> JSONResponse:
    """Answer one Dapr delivery to a subscription route: a bulk request (``{"entries": [...]}``),
    answered with a status per entry, or a single event, answered with one status. A bulk goes to
    ``deliver_all`` first when given (all entries at once; None means "one by one, please")."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return dapr_response(await deliver(body))
    entries = decoded.get("entries") if isinstance(decoded, dict) and "specversion" not in decoded else None
    if not isinstance(entries, list):
        return dapr_response(await deliver(decoded))
    entries = [entry for entry in entries if isinstance(entry, dict) and "entryId" in entry]
    if deliver_all is not None and entries:
        together = await deliver_all([entry.get("event") for entry in entries])
        if together is not None:
            return JSONResponse(
                {
                    "statuses": [
                        {"entryId": str(entry["entryId"]), "status": status.value}
                        for entry, status in zip(entries, together, strict=True)
                    ]
                }
            )
    statuses: list[dict[str, str]] = []
    held: set[str] = set()  # partition keys with an entry waiting for redelivery
    for entry in entries:
        key = _entry_key(entry)
        if key is not None and key in held:
            status = EventStatus.RETRY
        else:
            event = entry.get("event")
            if not isinstance(event, dict | str | bytes):
                event = orjson.dumps(event)  # not an event: the handler's parser reports it as poison
            status = await deliver(event)
            if status is EventStatus.RETRY and key is not None:
                held.add(key)
        statuses.append({"entryId": str(entry["entryId"]), "status": status.value})
    return JSONResponse({"statuses": statuses})


def _entry_key(entry: dict[str, Any]) -> str | None:
    """The Kafka message key of a bulk entry (the partition key the publisher set)."""
    metadata = entry.get("metadata")
    if isinstance(metadata, dict):
        for name in ("__key", "partitionKey"):
            if isinstance(metadata.get(name), str) and metadata[name]:
                return cast(str, metadata[name])
    event = entry.get("event")
    subject = event.get("subject") if isinstance(event, dict) else None
    return subject if isinstance(subject, str) and subject else None


def subscribe(
    app: FastAPI,
    topic: str,
    handler: Handler,
    *,
    processed: type[ProcessedEventMixin] | Ledger,
    event_types: frozenset[str] | None = None,
    source: str | None = None,
    pubsub: str = PUBSUB_NAME,
) -> EventConsumer:
    """Consume ``topic`` with ``handler``: ``POST /events/<topic>`` (Dapr's bulk subscribe, open only
    to the sidecar when APP_API_TOKEN is set) and an entry in ``GET /dapr/subscribe`` with the
    topic's dead-letter topic. ``processed`` is the service's processed-events table (or another
    ledger); ``source`` defaults to ``/todo/<service>``."""
    ledger = DatabaseLedger(app.state.db, processed, topic) if isinstance(processed, type) else processed
    consumer = EventConsumer(
        app.state.dapr,
        topic,
        source or f"/todo/{app.state.service}",
        handler,
        ledger,
        event_types,
    )
    route = f"/events/{topic}"
    settings = getattr(app.state, "settings", None)
    guard = [Depends(require_app_token)] if settings is not None and settings.app_api_token else []
    app.add_api_route(
        route,
        consumer.receive,
        methods=["POST"],
        include_in_schema=False,
        dependencies=guard,
        name=f"receive_{topic}",
    )
    _subscriptions(app).append(_subscription_entry(topic, route, pubsub))
    return consumer


def _subscription_entry(topic: str, route: str, pubsub: str) -> dict[str, Any]:
    return {
        "pubsubname": pubsub,
        "topic": topic,
        "route": route,
        "deadLetterTopic": dead_letter_topic(topic),
        "bulkSubscribe": {
            "enabled": True,
            "maxMessagesCount": BULK_MAX_MESSAGES,
            "maxAwaitDurationMs": BULK_MAX_AWAIT_MS,
        },
    }


def _subscriptions(app: FastAPI) -> list[dict[str, Any]]:
    """The app's programmatic subscriptions, served by ``GET /dapr/subscribe`` (added once)."""
    entries: list[dict[str, Any]] | None = getattr(app.state, "dapr_subscriptions", None)
    if entries is None:
        entries = app.state.dapr_subscriptions = []

        @app.get("/dapr/subscribe", include_in_schema=False)
        async def dapr_subscribe() -> list[dict[str, Any]]:
            return entries

    return entries


def new_event_id() -> str:
    return str(uuid.uuid4())
