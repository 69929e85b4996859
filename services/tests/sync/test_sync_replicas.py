"""Scaling sync out loses nothing: every replica (own daprd, own consumer group) gets every event."""

import asyncio
import uuid

import httpx
import orjson
import pytest
import websockets

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


async def login(backend: str) -> str:
    account = {"email": f"replica-{uuid.uuid4().hex[:8]}@example.test", "password": uuid.uuid4().hex}
    async with httpx.AsyncClient(base_url=backend, timeout=30) as c:
        (await c.post("/api/auth/register", json=account)).raise_for_status()
        return (await c.post("/api/auth/login", json=account)).json()["access_token"]


async def wait_for_task(ws, task_id: str) -> dict:
    async with asyncio.timeout(60):
        while True:
            msg = orjson.loads(await ws.recv())
            if msg["type"].startswith("task.") and msg["task"]["id"] == task_id:
                return msg


async def test_every_replica_pushes_every_event(todo_platform):
    second = todo_platform.add_replica("sync")
    try:
        # Earlier tests in the session may have restarted Kafka: make sure the first replica's
        # consumer has rejoined too (add_replica already waited for the second one).
        todo_platform.wait_pipeline("sync")
        token = await login(todo_platform.urls["backend"])
        urls = [todo_platform.urls[k].replace("http://", "ws://") + "/ws" for k in ("sync", second)]
        async with (
            websockets.connect(urls[0], subprotocols=["bearer", token]) as one,
            websockets.connect(urls[1], subprotocols=["bearer", token]) as two,
        ):
            async with httpx.AsyncClient(
                base_url=todo_platform.urls["backend"],
                timeout=30,
                headers={"Authorization": f"Bearer {token}"},
            ) as api:
                r = await api.post("/api/tasks", json={"title": "seen everywhere"})
                assert r.status_code == 201
                task_id = r.json()["id"]
            got = await asyncio.gather(wait_for_task(one, task_id), wait_for_task(two, task_id))
        assert [m["type"] for m in got] == ["task.created", "task.created"]
        assert got[0]["event_id"] == got[1]["event_id"]
    finally:
        todo_platform.stop(second)
