"""sync does not push events older than WS_MAX_EVENT_AGE_SECONDS (a replica catching up on old
events must not flood live WebSockets); it acknowledges them, counts them and logs them at info."""

import asyncio
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
import uvicorn
import websockets
from pydantic import ValidationError
from testbed.core import free_port
from testbed.platform import TEST_JWT_SECRET, task_event, task_snapshot, token_for
from testbed.polling import eventually_async
from todo.common import logging as todo_logging
from todo.common.cloudevents import REMINDER_DUE, build_event
from todo.sync.app import SyncSettings, create_app

MAX_AGE = 120.0


@pytest.fixture(scope="module")
async def server():
    settings = SyncSettings(
        jwt_secret=TEST_JWT_SECRET,
        dapr_ready_check=False,
        ws_heartbeat_seconds=0.3,
        ws_max_event_age_seconds=MAX_AGE,
        development_mode=True,
    )
    app = create_app(settings)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    task = asyncio.create_task(srv.serve())
    await eventually_async(lambda: srv.started, "uvicorn serving", within=30, interval=0.02)
    yield f"127.0.0.1:{port}"
    srv.should_exit = True
    await task


async def post_event(server, event, topic="task-events"):
    async with httpx.AsyncClient(base_url=f"http://{server}") as c:
        return await c.post(f"/events/{topic}", content=orjson.dumps(event | {"topic": topic}))


async def stale_count(server, topic, event_type) -> float | None:
    """The stale counter of one topic and type; None when the series does not exist."""
    async with httpx.AsyncClient(base_url=f"http://{server}") as c:
        text = (await c.get("/metrics")).text
    prefix = f'todo_events_consumed_total{{outcome="stale",topic="{topic}",type="{event_type}"}} '
    values = [float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix)]
    return values[0] if values else None


async def messages_until(ws, event_id):
    """Every message but heartbeats, up to and including the one of ``event_id``. A connection gets
    its messages in the order the events were handled, so whatever an earlier event pushed comes
    before it."""
    seen = []
    async with asyncio.timeout(10):
        while not seen or seen[-1]["event_id"] != event_id:
            msg = orjson.loads(await ws.recv())
            if msg["type"] not in ("heartbeat", "pong"):
                seen.append(msg)
    return seen


async def test_old_task_event_is_acknowledged_counted_logged_and_not_pushed(server, monkeypatch):
    user = uuid.uuid4()
    now = datetime.now(UTC)
    old = task_event("updated", task_snapshot(user, title="last week"), time=now - timedelta(days=7))
    edge = task_event(
        "updated", task_snapshot(user, title="just old"), time=now - timedelta(seconds=MAX_AGE + 5)
    )
    fresh = task_event("updated", task_snapshot(user, title="now"), time=now - timedelta(seconds=MAX_AGE / 2))
    before = await stale_count(server, "task-events", "com.todo.task.updated") or 0.0
    log = io.StringIO()  # every log line goes through one output (todo.common.logging)
    monkeypatch.setattr(todo_logging._output, "_write", lambda data: log.write(data.decode()))
    monkeypatch.setattr(todo_logging._output, "_flush", log.flush)
    async with websockets.connect(f"ws://{server}/ws", subprotocols=["bearer", token_for(user)]) as ws:
        for event in (old, edge, fresh):
            assert (await post_event(server, event)).json() == {"status": "SUCCESS"}
        pushed = await messages_until(ws, fresh["id"])
    assert [m["event_id"] for m in pushed] == [fresh["id"]]
    assert await stale_count(server, "task-events", "com.todo.task.updated") == before + 2

    lines = [json.loads(line) for line in log.getvalue().splitlines() if line.startswith("{")]
    dropped = [line for line in lines if line.get("message") == "stale event dropped"]
    assert {line["event_id"] for line in dropped} == {old["id"], edge["id"]}
    for line in dropped:
        assert line["level"] == "info"
        assert line["event_type"] == "com.todo.task.updated"
        assert line["max_age_seconds"] == MAX_AGE
        assert line["age_seconds"] > MAX_AGE


async def test_old_reminder_is_not_pushed_either(server):
    user = uuid.uuid4()
    task = task_snapshot(user, title="Dentist")
    data = {
        "task_id": task["id"],
        "user_id": str(user),
        "fire_at": "2026-01-01T10:00:00Z",
        "fired_at": "2026-01-01T10:00:01Z",
        "late": False,
        "version": 1,
        "task": task,
    }
    old = build_event(
        REMINDER_DUE, "/todo/notification", task["id"], data, time=datetime.now(UTC) - timedelta(hours=1)
    )
    before = await stale_count(server, "reminders", REMINDER_DUE) or 0.0
    marker = task_event("updated", task_snapshot(user, title="after the reminder"))
    async with websockets.connect(f"ws://{server}/ws", subprotocols=["bearer", token_for(user)]) as ws:
        assert (await post_event(server, old, topic="reminders")).json() == {"status": "SUCCESS"}
        assert (await post_event(server, marker)).json() == {"status": "SUCCESS"}
        assert [m["event_id"] for m in await messages_until(ws, marker["id"])] == [marker["id"]]
    assert await stale_count(server, "reminders", REMINDER_DUE) == before + 1


async def test_stale_series_exist_before_the_first_drop(server):
    assert await stale_count(server, "task-events", "com.todo.task.deleted") == 0


def test_default_bound_is_five_minutes_and_bad_values_are_refused(monkeypatch):
    assert SyncSettings().ws_max_event_age_seconds == 300
    monkeypatch.setenv("WS_MAX_EVENT_AGE_SECONDS", "30")
    assert SyncSettings().ws_max_event_age_seconds == 30
    for bad in ("0", "-5", "soon"):
        monkeypatch.setenv("WS_MAX_EVENT_AGE_SECONDS", bad)
        with pytest.raises(ValidationError, match="ws_max_event_age_seconds"):
            SyncSettings()
