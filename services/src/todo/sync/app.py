"""The sync service: an authenticated WebSocket that pushes every task change and reminder of a user
to all of that user's connections on this replica. Every replica consumes every event (its Dapr
component uses a consumer group of its own), so a user connected to any replica gets everything."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, WebSocket
from pydantic import Field

from todo.common.app import create_service_app
from todo.common.auth import jwt_keys_of, verified_token
from todo.common.cloudevents import REMINDER_DUE, TOPIC_REMINDERS, TOPIC_TASK_EVENTS, CloudEvent
from todo.common.consumer import AfterCommit, Handler, PoisonEvent, Skipped, subscribe
from todo.common.context import bind
from todo.common.dapr import PUBSUB_NAME
from todo.common.errors import ProblemError
from todo.common.logging import get_logger
from todo.common.metrics import (
    EVENTS_CONSUMED,
    WEBSOCKET_CONNECTIONS,
    WEBSOCKET_DELIVERY,
    WEBSOCKET_DISCONNECTS,
    WEBSOCKET_MESSAGES_SENT,
)
from todo.common.settings import ServiceSettings
from todo.sync.events import KNOWN_TYPES, RecentIds, RecentIdsLedger, UnroutableEvent, client_message
from todo.sync.hub import Hub, Outgoing

SERVICE = "sync"
CLOSE_POLICY_VIOLATION = 1008
#: RFC 6455 "try again later": the replica holds as many connections as it may.
CLOSE_TRY_AGAIN_LATER = 1013
_log = get_logger("todo.sync")


class SyncSettings(ServiceSettings):
    #: Seconds between heartbeat messages on an idle connection.
    ws_heartbeat_seconds: float = 20.0
    #: Messages queued for one connection before it counts as a slow client and is closed.
    ws_max_queue: int = 256
    #: Seconds one frame may take to go out before the client counts as slow.
    ws_send_timeout_seconds: float = 10.0
    #: Events older than this (seconds since the event's own time) are not pushed: a client that
    #: reconnects reloads its state, and a replica that catches up on old events (a consumer group
    #: that started behind, a long outage) must not flood live sockets with stale changes.
    ws_max_event_age_seconds: float = Field(default=300.0, gt=0)
    #: Open connections of one user on this replica (more are closed with 1008), and in total (1013).
    ws_max_connections_per_user: int = Field(default=10, ge=1)
    ws_max_connections: int = Field(default=2000, ge=1)
    #: The Dapr pub/sub component sync subscribes through (SYNC_PUBSUB_NAME). Every replica must
    #: see every event, so the apps role names the fan-out component, whose consumer group is each
    #: pod's own; through the shared "pubsub" the replicas would split the events between them.
    sync_pubsub_name: str = PUBSUB_NAME


class HubMetrics:
    def connected(self) -> None:
        WEBSOCKET_CONNECTIONS.inc()

    def disconnected(self, reason: str) -> None:
        WEBSOCKET_CONNECTIONS.dec()
        WEBSOCKET_DISCONNECTS.labels(reason).inc()

    def sent(self, message_type: str, delivery_seconds: float | None) -> None:
        WEBSOCKET_MESSAGES_SENT.labels(message_type).inc()
        if delivery_seconds is not None:
            WEBSOCKET_DELIVERY.observe(max(0.0, delivery_seconds))


def token_from(websocket: WebSocket) -> tuple[str | None, str | None]:
    """(token, subprotocol to accept) from ``Sec-WebSocket-Protocol: bearer, <jwt>`` (or the token
    alone). Never from the URL query: a URL lands in access logs, proxies' logs and browser history."""
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    if len(offered) >= 2 and offered[0].lower() == "bearer":
        return offered[1], offered[0]
    if len(offered) == 1 and offered[0].count(".") == 2:
        return offered[0], offered[0]
    return None, (offered[0] if offered else None)


def create_app(settings: SyncSettings | None = None) -> FastAPI:
    settings = settings or SyncSettings()
    hub = Hub(
        max_queue=settings.ws_max_queue,
        send_timeout=settings.ws_send_timeout_seconds,
        heartbeat_interval=settings.ws_heartbeat_seconds,
        observer=HubMetrics(),
    )
    for event_type in KNOWN_TYPES:
        # The stale series exist from start-up (value 0), so an alert sees them before the first drop.
        topic = TOPIC_REMINDERS if event_type == REMINDER_DUE else TOPIC_TASK_EVENTS
        EVENTS_CONSUMED.labels(topic, event_type, "stale")

    async def close_connections(_app: FastAPI) -> None:
        await hub.close_all()

    app = create_service_app(
        service=SERVICE,
        settings=settings,
        title="Todo sync service",
        description="WebSocket /ws: every task change and due reminder of the user, on all connections.",
        on_shutdown=[close_connections],
        check_database=False,  # no tables: readiness is the sidecar only
    )
    app.state.hub = hub

    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        await _serve_websocket(websocket, app, hub, settings)

    push, ledger = _pusher(hub, settings.ws_max_event_age_seconds), RecentIdsLedger(RecentIds())
    for topic in (TOPIC_TASK_EVENTS, TOPIC_REMINDERS):
        subscribe(app, topic, push, processed=ledger, pubsub=settings.sync_pubsub_name)
    return app


async def _serve_websocket(websocket: WebSocket, app: FastAPI, hub: Hub, settings: SyncSettings) -> None:
    """One client's connection: authenticated by its token, within the limits, while the token lasts."""
    token, subprotocol = token_from(websocket)
    await websocket.accept(subprotocol=subprotocol)
    try:
        if not token:
            raise ProblemError(401, "missing-token", "no token")
        user, expires_at = verified_token(token, jwt_keys_of(app))
        user_id = str(user)
    except ProblemError:
        WEBSOCKET_DISCONNECTS.labels("auth_failed").inc()
        await websocket.close(code=CLOSE_POLICY_VIOLATION, reason="authentication failed")
        return
    bind(user_id=user_id)
    if hub.connections() >= settings.ws_max_connections:
        WEBSOCKET_DISCONNECTS.labels("limit").inc()
        await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason="too many connections; retry later")
        return
    if hub.connections(user_id) >= settings.ws_max_connections_per_user:
        WEBSOCKET_DISCONNECTS.labels("limit").inc()
        await websocket.close(code=CLOSE_POLICY_VIOLATION, reason="too many connections for this user")
        return

    async def send(payload: bytes) -> None:
        await websocket.send_text(payload.decode())

    async def close(code: int, reason: str) -> None:
        await websocket.close(code=code, reason=reason)

    conn = hub.connect(user_id, send, close)
    writer = asyncio.create_task(hub.serve(conn))
    reader = asyncio.create_task(_read(websocket, conn))
    # The connection lives no longer than the token it was opened with.
    expiry = asyncio.create_task(asyncio.sleep(max(0.0, expires_at - time.time())))
    try:
        done, _ = await asyncio.wait({writer, reader, expiry}, return_when=asyncio.FIRST_COMPLETED)
        if expiry in done:
            # the close frame first: a connection the hub has let go of is not closed again
            await conn.close(CLOSE_POLICY_VIOLATION, "token expired")
            await hub.disconnect(conn, "token_expired")
    finally:
        await hub.disconnect(conn, "client_closed")
        for task in (reader, writer, expiry):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _pusher(hub: Hub, max_age: float) -> Handler:
    """The consumer's handler: an event's message, pushed to its user's connections after the
    event is claimed; poison for an unknown type or an event without a user; stale ones skipped."""

    async def push(_claimed: object, event: CloudEvent) -> AfterCommit:
        if event.type not in KNOWN_TYPES:
            raise PoisonEvent(f"unknown event type {event.type}")
        try:
            user_id, message = client_message(event)
        except UnroutableEvent as exc:
            raise PoisonEvent(str(exc)) from None
        age = (datetime.now(UTC) - event.time).total_seconds() if event.time else None
        if age is not None and age > max_age:
            # Acknowledged, not pushed: redelivering it would only make it older.
            _log.info("stale event dropped", age_seconds=round(age, 3), max_age_seconds=max_age)
            raise Skipped("stale")

        async def send() -> None:
            hub.publish(user_id, message["type"], message, age_at_enqueue=age)

        return send

    return push


async def _read(websocket: WebSocket, conn: Any) -> None:
    """Client -> server: ``ping`` gets a ``pong``; anything else is ignored. Ends on disconnect."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "ping":
            conn.offer(Outgoing("pong", b'{"type":"pong"}'))
