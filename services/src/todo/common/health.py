"""/healthz (liveness: the process answers) and /readyz (database and Dapr sidecar reachable, and
the process not shutting down)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from todo.common.shutdown import draining

ReadinessCheck = Callable[[FastAPI], Awaitable[bool]]


async def database_ready(app: FastAPI) -> bool:
    ready: bool = await app.state.db.ping()
    return ready


async def sidecar_ready(app: FastAPI) -> bool:
    ready: bool = await app.state.dapr.healthy()
    return ready


def add_health_routes(app: FastAPI, checks: dict[str, ReadinessCheck]) -> None:
    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Readiness: database and sidecar",
        responses={503: {"description": "A dependency is not reachable"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        if draining(request.app):  # SIGTERM arrived: in-flight requests finish, send no new ones
            return JSONResponse({"status": "draining", "checks": {}}, status_code=503)
        names = list(checks)
        results = await asyncio.gather(
            *(asyncio.wait_for(checks[n](request.app), timeout=3.0) for n in names), return_exceptions=True
        )
        status = {n: ("ok" if r is True else "failing") for n, r in zip(names, results, strict=True)}
        ready = all(v == "ok" for v in status.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": status}, status_code=200 if ready else 503
        )
