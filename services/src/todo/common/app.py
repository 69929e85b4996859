"""The app factory every service's ``create_app()`` calls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.telemetry import TelemetryConfig

from todo.common.auth import JwtKeys, document_bearer_auth
from todo.common.dapr import DaprClient
from todo.common.db import Database, DatabaseTimeouts
from todo.common.errors import install_error_handlers
from todo.common.health import ReadinessCheck, add_health_routes, database_ready, sidecar_ready
from todo.common.logging import configure_logging, get_logger
from todo.common.metrics import HttpMetrics, metrics_endpoint
from todo.common.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from todo.common.openapi import complete_responses
from todo.common.settings import ServiceSettings

#: A hook gets the app; startup hooks may return a coroutine to run as a background task for the
#: app's lifetime (e.g. an outbox relay), cancelled at shutdown.
StartupHook = Callable[[FastAPI], Awaitable[Coroutine[Any, Any, Any] | None]]
ShutdownHook = Callable[[FastAPI], Awaitable[None]]

_log = get_logger("todo.app")
_NO_OPENTELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


def create_service_app(
    *,
    service: str,
    settings: ServiceSettings,
    title: str,
    description: str = "",
    version: str = "0.1.0",
    routers: Sequence[APIRouter] = (),
    on_startup: Sequence[StartupHook] = (),
    on_shutdown: Sequence[ShutdownHook] = (),
    extra_ready_checks: dict[str, ReadinessCheck] | None = None,
    check_database: bool = True,
    openapi_tags: list[dict[str, Any]] | None = None,
) -> FastAPI:
    """Build a FastAPI app with logging, metrics, request context, problem+json errors, health,
    a database (``app.state.db``) and a Dapr client (``app.state.dapr``) already wired.

    ``check_database=False`` leaves the database out of /readyz (for a service without tables; the
    engine is created lazily and never connects if unused)."""
    configure_logging(service, settings.log_level)
    settings.check_can_serve()
    if settings.app_api_token is None:
        _log.warning("development mode without APP_API_TOKEN: event and internal routes are open to anyone")
    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=_lifespan(service, version, on_startup, on_shutdown),
        openapi_tags=openapi_tags,
        # The platform's telemetry is its own: Prometheus metrics, JSON logs and traceparent
        # propagation (docs/observability.md). FastAPI's OpenTelemetry hooks would only look up the
        # global providers on every request, a few per cent of a create request's CPU.
        telemetry=_NO_OPENTELEMETRY,
    )
    _attach_state(app, service, settings)
    install_error_handlers(app)
    add_health_routes(app, _readiness_checks(settings, check_database, extra_ready_checks))
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    document_bearer_auth(app, routers)
    for router in routers:
        app.include_router(router)
    complete_responses(app)
    _add_middleware(app, settings)
    return app


def _lifespan(
    service: str, version: str, on_startup: Sequence[StartupHook], on_shutdown: Sequence[ShutdownHook]
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Startup hooks in order (their background work as tasks); at shutdown the tasks are cancelled,
    then the shutdown hooks run and the Dapr client and database close."""
    background: list[asyncio.Task[Any]] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for hook in on_startup:
            work = await hook(app)
            if work is not None:
                background.append(asyncio.create_task(work, name=f"{service}-background"))
        _log.info("service started", version=version)
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            background.clear()
            for hook in on_shutdown:
                await hook(app)
            await app.state.dapr.aclose()
            await app.state.db.dispose()
            _log.info("service stopped")

    return lifespan


def _attach_state(app: FastAPI, service: str, settings: ServiceSettings) -> None:
    """The settings, JWT keys, database and Dapr client every route and hook reaches via app.state."""
    app.state.service = service
    app.state.settings = settings
    app.state.jwt_keys = JwtKeys.from_settings(settings)
    app.state.db = Database(
        settings.database_url.get_secret_value(),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        application_name=service,
        timeouts=DatabaseTimeouts.from_settings(settings),
    )
    app.state.dapr = DaprClient(
        settings.dapr_url,
        settings.dapr_api_token.get_secret_value() if settings.dapr_api_token else None,
    )


def _readiness_checks(
    settings: ServiceSettings, check_database: bool, extra: dict[str, ReadinessCheck] | None
) -> dict[str, ReadinessCheck]:
    checks: dict[str, ReadinessCheck] = {"database": database_ready} if check_database else {}
    if settings.dapr_ready_check:
        checks["sidecar"] = sidecar_ready
    checks.update(extra or {})
    return checks


def _add_middleware(app: FastAPI, settings: ServiceSettings) -> None:
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_request_body_bytes,
        trusted_max_bytes=settings.max_delivery_body_bytes,
        app_token=settings.app_api_token.get_secret_value() if settings.app_api_token else None,
    )
    if settings.instrumentation:
        # added last = outermost: the request context is bound before handlers run
        app.add_middleware(RequestContextMiddleware, metrics=HttpMetrics(app.router))
