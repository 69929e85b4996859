"""Fan-out of task changes and reminders to every WebSocket connection of a user.

Each connection owns a bounded queue and a writer task. Publishing never awaits a client: a
message goes into each of the user's queues with ``put_nowait``; a connection whose queue is full
(or whose socket does not take a frame within ``send_timeout``) is a slow client and is closed,
so one slow reader never delays the others. Idle connections get a heartbeat message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

#: WebSocket close code for "try again later", used when a slow client is dropped.
CLOSE_SLOW_CLIENT = 1013
CLOSE_GOING_AWAY = 1001


class HubObserver(Protocol):
    def connected(self) -> None: ...
    def disconnected(self, reason: str) -> None: ...
    def sent(self, message_type: str, delivery_seconds: float | None) -> None: ...


class NullObserver:
    def connected(self) -> None:
        pass

    def disconnected(self, reason: str) -> None:
        pass

    def sent(self, message_type: str, delivery_seconds: float | None) -> None:
        pass


@dataclass
class Outgoing:
    type: str
    payload: bytes
    enqueued: float = field(default_factory=time.monotonic)
    #: seconds between the event's own time and the moment it was handed to the hub, if known
    age_at_enqueue: float | None = None


class Connection:
    def __init__(
        self,
        user_id: str,
        send: Callable[[bytes], Awaitable[None]],
        close: Callable[[int, str], Awaitable[None]],
        *,
        max_queue: int = 256,
    ) -> None:
        self.user_id = user_id
        self._send = send
        self._close = close
        self.queue: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=max_queue)
        self.closed = asyncio.Event()
        self.close_reason: str | None = None

    def offer(self, message: Outgoing) -> bool:
        """Queue a message without waiting; ``False`` when the client cannot keep up."""
        if self.closed.is_set():
            return False
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            return False
        return True

    async def close(self, code: int, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.closed.set()
        with contextlib.suppress(Exception):
            await self._close(code, reason)


class Hub:
    def __init__(
        self,
        *,
        max_queue: int = 256,
        send_timeout: float = 5.0,
        heartbeat_interval: float = 20.0,
        observer: HubObserver | None = None,
    ) -> None:
        self.max_queue = max_queue
        self.send_timeout = send_timeout
        self.heartbeat_interval = heartbeat_interval
        self.observer: HubObserver = observer or NullObserver()
        self._by_user: dict[str, set[Connection]] = {}
        self._background: set[asyncio.Task[Any]] = set()

    def connections(self, user_id: str | None = None) -> int:
        if user_id is not None:
            return len(self._by_user.get(user_id, ()))
        return sum(len(c) for c in self._by_user.values())

    def connect(
        self,
        user_id: str,
        send: Callable[[bytes], Awaitable[None]],
        close: Callable[[int, str], Awaitable[None]],
    ) -> Connection:
        conn = Connection(user_id, send, close, max_queue=self.max_queue)
        self._by_user.setdefault(user_id, set()).add(conn)
        self.observer.connected()
        return conn

    def _forget(self, conn: Connection, reason: str) -> None:
        peers = self._by_user.get(conn.user_id)
        if peers is None or conn not in peers:
            return
        peers.discard(conn)
        if not peers:
            del self._by_user[conn.user_id]
        self.observer.disconnected(reason)

    async def disconnect(self, conn: Connection, reason: str = "client_closed") -> None:
        self._forget(conn, reason)
        conn.close_reason = conn.close_reason or reason
        conn.closed.set()

    def publish(
        self, user_id: str, message_type: str, body: dict[str, Any], age_at_enqueue: float | None = None
    ) -> int:
        """Queue ``body`` for every connection of ``user_id``; returns how many took it."""
        peers = list(self._by_user.get(user_id, ()))
        if not peers:
            return 0
        message = Outgoing(message_type, orjson.dumps(body), age_at_enqueue=age_at_enqueue)
        taken = 0
        for conn in peers:
            if conn.offer(message):
                taken += 1
            else:
                self._drop_slow(conn)
        return taken

    def _drop_slow(self, conn: Connection) -> None:
        self._forget(conn, "slow_client")
        task = asyncio.get_running_loop().create_task(conn.close(CLOSE_SLOW_CLIENT, "slow client"))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def serve(self, conn: Connection) -> None:
        """Write queued messages (and heartbeats) to the socket until the connection closes."""
        closed_wait = asyncio.ensure_future(conn.closed.wait())
        getter: asyncio.Future[Outgoing] | None = None
        try:
            while not conn.closed.is_set():
                getter = asyncio.ensure_future(conn.queue.get())
                done, _ = await asyncio.wait(
                    {getter, closed_wait},
                    timeout=self.heartbeat_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if getter not in done:
                    getter.cancel()
                    if conn.closed.is_set():
                        break
                    message = Outgoing("heartbeat", orjson.dumps({"type": "heartbeat", "time": _now_iso()}))
                else:
                    message = getter.result()
                try:
                    await asyncio.wait_for(conn._send(message.payload), self.send_timeout)
                except TimeoutError:
                    self._forget(conn, "slow_client")
                    await conn.close(CLOSE_SLOW_CLIENT, "slow client")
                    break
                except Exception:
                    self._forget(conn, "send_failed")
                    conn.closed.set()
                    break
                delivery = None
                if message.age_at_enqueue is not None:
                    delivery = message.age_at_enqueue + (time.monotonic() - message.enqueued)
                self.observer.sent(message.type, delivery)
        finally:
            # also when this task is cancelled mid-wait: a pending getter would outlive the socket
            closed_wait.cancel()
            if getter is not None:
                getter.cancel()

    async def close_all(self) -> None:
        for peers in list(self._by_user.values()):
            for conn in list(peers):
                self._forget(conn, "server_shutdown")
                await conn.close(CLOSE_GOING_AWAY, "server shutting down")


def _now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
