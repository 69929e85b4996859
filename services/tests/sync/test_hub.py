"""The fan-out hub: per-user delivery, bounded queues, slow clients dropped, heartbeats."""

import asyncio

import orjson
from testbed.polling import eventually_async
from todo.sync.hub import CLOSE_SLOW_CLIENT, Hub


class FakeSocket:
    """A client end of a socket: records frames; can be made to stall."""

    def __init__(self, stall: bool = False):
        self.frames: list[dict] = []
        self.closed_with: tuple[int, str] | None = None
        self.stall = stall
        self.release = asyncio.Event()

    async def send(self, payload: bytes) -> None:
        if self.stall:
            await self.release.wait()
        self.frames.append(orjson.loads(payload))

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)


class Recorder:
    def __init__(self):
        self.events = []

    def connected(self):
        self.events.append(("connected",))

    def disconnected(self, reason):
        self.events.append(("disconnected", reason))

    def sent(self, message_type, delivery):
        self.events.append(("sent", message_type))


async def _attach(hub, user, sock):
    conn = hub.connect(user, sock.send, sock.close)
    task = asyncio.create_task(hub.serve(conn))
    return conn, task


async def _until(predicate):
    await eventually_async(predicate, "the fake socket's state", within=5, interval=0.005)


async def test_message_reaches_every_connection_of_the_user_and_nobody_else():
    hub = Hub()
    a1, a2, b = FakeSocket(), FakeSocket(), FakeSocket()
    tasks = [
        (await _attach(hub, "alice", a1))[1],
        (await _attach(hub, "alice", a2))[1],
        (await _attach(hub, "bob", b))[1],
    ]
    assert hub.publish("alice", "task.updated", {"type": "task.updated", "n": 1}) == 2
    await _until(lambda: a1.frames and a2.frames)
    assert a1.frames == a2.frames == [{"type": "task.updated", "n": 1}]
    assert b.frames == []
    await hub.close_all()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)


async def test_order_is_kept_per_connection():
    hub = Hub()
    sock = FakeSocket()
    _, task = await _attach(hub, "u", sock)
    for n in range(50):
        hub.publish("u", "t", {"n": n})
    await _until(lambda: len(sock.frames) == 50)
    assert [f["n"] for f in sock.frames] == list(range(50))
    await hub.close_all()
    await task


async def test_slow_client_is_disconnected_and_others_keep_receiving():
    rec = Recorder()
    hub = Hub(max_queue=4, send_timeout=30, observer=rec)
    slow, fast = FakeSocket(stall=True), FakeSocket()
    _, slow_task = await _attach(hub, "u", slow)
    _, fast_task = await _attach(hub, "u", fast)
    for n in range(20):
        hub.publish("u", "t", {"n": n})
        await _until(lambda n=n: len(fast.frames) == n + 1)
    assert [f["n"] for f in fast.frames] == list(range(20))
    await _until(lambda: slow.closed_with is not None)
    assert slow.closed_with[0] == CLOSE_SLOW_CLIENT
    assert ("disconnected", "slow_client") in rec.events
    assert hub.connections("u") == 1
    slow.release.set()
    await asyncio.wait_for(slow_task, 5)
    await hub.close_all()
    await fast_task


async def test_client_stalled_on_one_frame_is_dropped_after_send_timeout():
    hub = Hub(max_queue=100, send_timeout=0.05)
    sock = FakeSocket(stall=True)
    _, task = await _attach(hub, "u", sock)
    hub.publish("u", "t", {"n": 1})
    await asyncio.wait_for(task, 5)
    assert sock.closed_with[0] == CLOSE_SLOW_CLIENT
    assert hub.connections() == 0


async def test_idle_connection_gets_heartbeats():
    hub = Hub(heartbeat_interval=0.02)
    sock = FakeSocket()
    _, task = await _attach(hub, "u", sock)
    await _until(lambda: len(sock.frames) >= 2)
    assert all(f["type"] == "heartbeat" and f["time"].endswith("Z") for f in sock.frames)
    await hub.close_all()
    await task


async def test_disconnect_removes_the_connection_and_stops_its_writer():
    rec = Recorder()
    hub = Hub(observer=rec)
    sock = FakeSocket()
    conn, task = await _attach(hub, "u", sock)
    await hub.disconnect(conn)
    await asyncio.wait_for(task, 5)
    assert hub.connections() == 0
    assert hub.publish("u", "t", {}) == 0
    assert rec.events == [("connected",), ("disconnected", "client_closed")]


async def test_publish_without_connections_is_cheap_noop():
    assert Hub().publish("nobody", "t", {"x": 1}) == 0
