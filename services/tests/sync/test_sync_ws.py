"""The sync service over a real WebSocket (uvicorn on loopback, the websockets client)."""

import asyncio
import uuid

import httpx
import orjson
import pytest
import uvicorn
import websockets
from testbed.core import free_port
from testbed.platform import TEST_JWT_SECRET, task_event, task_snapshot, token_for
from testbed.polling import eventually, eventually_async
from todo.common.cloudevents import REMINDER_DUE, build_event
from todo.sync.app import SyncSettings, create_app


@pytest.fixture(scope="module")
async def server():
    settings = SyncSettings(
        jwt_secret=TEST_JWT_SECRET, dapr_ready_check=False, ws_heartbeat_seconds=0.3, development_mode=True
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
        r = await c.post(f"/events/{topic}", content=orjson.dumps(event | {"topic": topic}))
    return r


async def next_message(ws, skip=("heartbeat",)):
    async with asyncio.timeout(10):
        while True:
            msg = orjson.loads(await ws.recv())
            if msg["type"] not in skip:
                return msg


async def test_task_change_reaches_every_connection_of_the_user_only(server):
    alice, bob = uuid.uuid4(), uuid.uuid4()
    url = f"ws://{server}/ws"
    async with (
        websockets.connect(url, subprotocols=["bearer", token_for(alice)]) as a1,
        websockets.connect(url, subprotocols=[token_for(alice)]) as a2,
        websockets.connect(url, subprotocols=["bearer", token_for(bob)]) as b,
    ):
        assert a1.subprotocol == "bearer"
        task = task_snapshot(alice, title="Buy milk", version=3)
        event = task_event("updated", task, changed_fields=["title"])
        r = await post_event(server, event)
        assert r.json() == {"status": "SUCCESS"}
        for ws in (a1, a2):
            msg = await next_message(ws)
            assert msg["type"] == "task.updated"
            assert msg["event_id"] == event["id"]
            assert msg["time"] == event["time"]
            assert msg["version"] == 3
            assert msg["task"]["title"] == "Buy milk" and msg["task"]["id"] == task["id"]
            assert msg["changed_fields"] == ["title"]
        # Bob's next message is a heartbeat: nothing of Alice's reached him.
        assert orjson.loads(await asyncio.wait_for(b.recv(), 5))["type"] == "heartbeat"


async def test_reminder_reaches_the_user(server):
    user = uuid.uuid4()
    task = task_snapshot(user, title="Dentist")
    data = {
        "task_id": task["id"],
        "user_id": str(user),
        "fire_at": "2026-01-01T10:00:00Z",
        "fired_at": "2026-01-01T10:00:01Z",
        "due_at": "2026-01-01T10:15:00Z",
        "late": False,
        "version": 1,
        "task": task,
    }
    event = build_event(REMINDER_DUE, "/todo/notification", task["id"], data)
    async with websockets.connect(f"ws://{server}/ws", subprotocols=["bearer", token_for(user)]) as ws:
        assert (await post_event(server, event, "reminders")).json() == {"status": "SUCCESS"}
        msg = await next_message(ws)
    assert msg["type"] == "reminder.due"
    assert msg["task"]["title"] == "Dentist"
    assert msg["reminder"] == {
        "fire_at": "2026-01-01T10:00:00Z",
        "fired_at": "2026-01-01T10:00:01Z",
        "late": False,
    }


async def test_redelivered_event_is_pushed_once(server):
    user = uuid.uuid4()
    first = task_event("created", task_snapshot(user))
    second = task_event("deleted", task_snapshot(user, version=2))
    async with websockets.connect(f"ws://{server}/ws", subprotocols=["bearer", token_for(user)]) as ws:
        await post_event(server, first)
        await post_event(server, first)
        await post_event(server, second)
        assert (await next_message(ws))["event_id"] == first["id"]
        assert (await next_message(ws))["event_id"] == second["id"]


@pytest.mark.parametrize(
    "how",
    ["none", "garbage", "wrong-secret", "expired", "in-the-url"],
)
async def test_bad_token_is_closed_with_1008_before_any_data(server, how):
    user = uuid.uuid4()
    token = {
        "none": None,
        "garbage": "not.a.jwt",
        "wrong-secret": token_for(user, secret="a-different-secret-of-enough-length-000"),
        "expired": token_for(user, ttl_seconds=-60),
        "in-the-url": None,  # a valid token, but in the query string: no longer accepted
    }[how]
    url = f"ws://{server}/ws" + (f"?token={token_for(user)}" if how == "in-the-url" else "")
    async with websockets.connect(url, subprotocols=["bearer", token] if token else None) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 1008


async def test_ping_gets_pong_and_idle_connection_gets_heartbeats(server):
    token = token_for(uuid.uuid4())
    async with websockets.connect(f"ws://{server}/ws", subprotocols=["bearer", token]) as ws:
        await ws.send("ping")
        assert (await next_message(ws))["type"] == "pong"
        beat = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        assert beat["type"] == "heartbeat"


@pytest.mark.testbed
async def test_unusable_events_go_to_the_dead_letter_topic_with_the_reason(daprd_factory, kafka, tmp_path):
    """Like every consumer, sync publishes poison to ``<topic>-dlq`` itself, reason attached, and
    acknowledges it; it no longer answers DROP (which left the dead-lettering to Dapr, without a
    reason, and lost the event when that publish failed)."""
    from confluent_kafka import Consumer
    from testbed.daprd import kafka_pubsub_component

    (tmp_path / "pubsub.yaml").write_text(kafka_pubsub_component(kafka.plaintext, consumer_group="syncdlq"))
    sidecar = daprd_factory("syncdlqtest", None, tmp_path)
    settings = SyncSettings(
        jwt_secret=TEST_JWT_SECRET,
        dapr_ready_check=False,
        development_mode=True,
        dapr_http_port=sidecar.http_port,
    )
    app = create_app(settings)
    marker = uuid.uuid4().hex  # the shared Kafka may hold dead letters of other tests
    no_user = {
        "specversion": "1.0",
        "id": f"no-user-{marker}",
        "source": "/t",
        "type": "com.todo.task.created",
        "subject": marker,
        "data": {"no": "user"},
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sync") as c:
        r = await c.post("/events/task-events", content=orjson.dumps(no_user | {"topic": "task-events"}))
        assert r.json() == {"status": "SUCCESS"}
        r = await c.post("/events/reminders", content=f"not json {marker}".encode())
        assert r.json() == {"status": "SUCCESS"}
    await app.state.dapr.aclose()

    reader = Consumer(
        {**kafka.client_config("plaintext"), "group.id": f"t-{marker}", "auto.offset.reset": "earliest"}
    )
    reader.subscribe(["task-events-dlq", "reminders-dlq"])
    found: dict[str, dict] = {}

    def read_both() -> bool:
        msg = reader.poll(0.5)
        if msg is not None and not msg.error() and marker in msg.value().decode():
            found[msg.topic()] = orjson.loads(msg.value())
        assert len(found) == 2, f"dead letters read so far: {sorted(found)}"
        return True

    try:
        await asyncio.to_thread(eventually, read_both, "a dead letter on each DLQ", within=60, interval=0)
    finally:
        reader.close()
    assert found["task-events-dlq"]["id"] == no_user["id"]
    assert found["task-events-dlq"]["deadletterreason"] == "data.user_id is missing"
    assert found["reminders-dlq"]["type"] == "com.todo.deadletter"


async def test_unusable_events_are_retried_while_the_dead_letter_topic_is_unreachable():
    settings = SyncSettings(
        jwt_secret=TEST_JWT_SECRET, dapr_ready_check=False, development_mode=True, dapr_http_port=9
    )  # nothing listens: the DLQ publish fails
    app = create_app(settings)
    no_user = {
        "specversion": "1.0",
        "id": "x",
        "source": "/t",
        "type": "com.todo.task.created",
        "data": {"no": "user"},
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sync") as c:
        r = await c.post("/events/task-events", content=orjson.dumps(no_user))
        assert r.status_code == 503 and r.json() == {"status": "RETRY"}
        r = await c.post("/events/task-events", content=b"{not json")
        assert r.json() == {"status": "RETRY"}
    await app.state.dapr.aclose()


async def test_subscribes_to_both_topics_with_dead_letter_topics(server):
    async with httpx.AsyncClient(base_url=f"http://{server}") as c:
        subs = (await c.get("/dapr/subscribe")).json()
    assert {(s["topic"], s["deadLetterTopic"]) for s in subs} == {
        ("task-events", "task-events-dlq"),
        ("reminders", "reminders-dlq"),
    }


async def test_metrics_count_connections_and_messages(server):
    async with httpx.AsyncClient(base_url=f"http://{server}") as c:
        text = (await c.get("/metrics")).text
    assert "todo_websocket_connections" in text
    sent = [line for line in text.splitlines() if line.startswith("todo_websocket_messages_sent_total{")]
    assert any('type="task.updated"' in line and not line.endswith(" 0.0") for line in sent)
