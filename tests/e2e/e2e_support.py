"""Helpers of the end-to-end suite (a plain module so that tests can import them)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import orjson
import pytest
import websockets
from testbed.polling import eventually_async

T = TypeVar("T")
#: Upper bound for one asynchronous effect (event through Kafka, reminder) to become visible.
EVENTUAL = float(os.environ.get("E2E_EVENTUAL_SECONDS", "60"))


@dataclass(frozen=True)
class Endpoints:
    backend: str
    audit: str
    sync: str

    @property
    def websocket(self) -> str:
        base = self.sync.replace("https://", "wss://").replace("http://", "ws://")
        return base.rstrip("/") + "/ws"


class User:
    """A freshly registered user with an authenticated client for the backend and the audit API."""

    def __init__(self, endpoints: Endpoints, token: str, user_id: str) -> None:
        self.endpoints = endpoints
        self.token = token
        self.id = user_id
        headers = {"Authorization": f"Bearer {token}"}
        self.api = httpx.AsyncClient(base_url=endpoints.backend, headers=headers, timeout=30)
        self.audit_api = httpx.AsyncClient(base_url=endpoints.audit, headers=headers, timeout=30)

    async def aclose(self) -> None:
        await self.api.aclose()
        await self.audit_api.aclose()

    async def create_task(self, **fields: Any) -> dict[str, Any]:
        r = await self.api.post("/api/tasks", json={"title": "e2e task", **fields})
        assert r.status_code == 201, r.text
        return r.json()

    async def patch_task(self, task_id: str, **fields: Any) -> dict[str, Any]:
        r = await self.api.patch(f"/api/tasks/{task_id}", json=fields)
        assert r.status_code == 200, r.text
        return r.json()

    async def action(self, task_id: str, verb: str) -> dict[str, Any]:
        r = await self.api.post(f"/api/tasks/{task_id}/{verb}")
        assert r.status_code == 200, r.text
        return r.json()

    async def delete_task(self, task_id: str) -> None:
        r = await self.api.delete(f"/api/tasks/{task_id}")
        assert r.status_code == 204, r.text

    async def tasks(self, **params: Any) -> list[dict[str, Any]]:
        return await _all_pages(self.api, "/api/tasks", {"limit": 100, **params})

    async def audit(self, **params: Any) -> list[dict[str, Any]]:
        return await _all_pages(self.audit_api, "/api/audit", {"limit": 500, **params})

    def websocket(self) -> Any:
        return websockets.connect(
            self.endpoints.websocket, subprotocols=["bearer", self.token], open_timeout=30
        )


async def _all_pages(client: httpx.AsyncClient, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every item of a cursor-paginated listing ({items, next_cursor})."""
    items, cursor = [], None
    while True:
        page = {"cursor": cursor} if cursor else {}
        r = await client.get(path, params={**params, **page})
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items


async def eventually(probe: Callable[[], Awaitable[T]], what: str, within: float = EVENTUAL) -> T:
    """The test bed's ``eventually_async`` bounded by E2E_EVENTUAL_SECONDS (tests/containers use it too)."""
    return await eventually_async(probe, what, within=within)


async def receive_until(
    ws: Any, accept: Callable[[dict[str, Any]], bool], what: str, within: float = EVENTUAL
) -> dict[str, Any]:
    """Read WebSocket messages until one satisfies ``accept``; heartbeats and others are skipped."""
    try:
        async with asyncio.timeout(within):
            while True:
                message = orjson.loads(await ws.recv())
                if accept(message):
                    return message
    except TimeoutError:
        pytest.fail(f"{what} did not arrive on the WebSocket within {within:.0f}s")
