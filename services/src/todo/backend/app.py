"""``create_app()`` of the backend (run by ``todo-service backend``)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import FastAPI

from todo.backend.auth_limits import AuthLimits
from todo.backend.models import Outbox
from todo.backend.routes import auth_router, internal_router, tasks_router
from todo.backend.service import wake_on_commit
from todo.backend.settings import BackendSettings
from todo.common.app import create_service_app
from todo.common.outbox import OutboxRelay

DESCRIPTION = """Tasks of the Todo platform. Authenticate with `POST /api/auth/login` and send
`Authorization: Bearer <token>`. Every change is published as a CloudEvent on the `task-events` topic.
Errors are RFC 7807 `application/problem+json`."""


def create_app(settings: BackendSettings | None = None) -> FastAPI:
    settings = settings or BackendSettings()

    async def start_relay(app: FastAPI) -> Awaitable[Any] | None:
        if not settings.outbox_relay:
            return None
        relay = OutboxRelay(app.state.db, Outbox, app.state.dapr, batch_size=settings.outbox_batch_size)
        app.state.relay = relay
        app.state.stop_waking_relay = wake_on_commit(app.state.db.engine, relay.notify)
        return relay.run()

    async def stop_waking_relay(app: FastAPI) -> None:
        if app.state.relay is not None:
            app.state.stop_waking_relay()

    limits = AuthLimits(
        client_per_minute=settings.auth_client_per_minute,
        client_burst=settings.auth_client_burst,
        account_per_minute=settings.auth_account_per_minute,
        account_burst=settings.auth_account_burst,
        hash_concurrency=settings.password_hash_concurrency,
        hash_queue=settings.password_hash_queue,
    )
    app = create_service_app(
        service="backend",
        settings=settings,
        title="Todo backend",
        description=DESCRIPTION,
        routers=[auth_router, tasks_router, internal_router],
        on_startup=[start_relay],
        on_shutdown=[stop_waking_relay],
        openapi_tags=[
            {"name": "auth", "description": "Accounts and access tokens"},
            {"name": "tasks", "description": "The current user's tasks"},
            {"name": "internal", "description": "Service-to-service (Dapr invocation, app API token)"},
            {"name": "health", "description": "Probes"},
        ],
    )
    app.state.relay = None
    app.state.auth_limits = limits
    return app
