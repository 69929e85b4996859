"""A scripted workload that exercises every metric and the log paths of the five services,
including a publish failure (the backend's sidecar stopped for a moment), a poison event and
planted secrets that must never reach a log line."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from testbed.polling import eventually
from websockets.sync.client import connect


@dataclass
class Planted:
    """Secret values sent through requests; none may appear in any log line."""

    password: str = field(default_factory=lambda: f"PlantedPw-{uuid.uuid4().hex}")
    token: str = field(default_factory=lambda: f"planted-token-{uuid.uuid4().hex}")
    auth_header: str = field(default_factory=lambda: f"PlantedAuth{uuid.uuid4().hex}")
    connection_secret: str = field(default_factory=lambda: f"PlantedConn{uuid.uuid4().hex}")
    issued_jwt: str = ""

    def values(self) -> dict[str, str]:
        values = {
            "password": self.password,
            "token": self.token,
            "authorization header": self.auth_header,
            "connection string": self.connection_secret,
        }
        if self.issued_jwt:
            values["issued JWT"] = self.issued_jwt
        return values


def _iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat().replace("+00:00", "Z")


def _ok(resp: httpx.Response, *codes: int) -> Any:
    assert resp.status_code in codes, (
        f"{resp.request.method} {resp.request.url.path}: {resp.status_code} {resp.text}"
    )
    return resp.json() if resp.content else None


def run_workload(platform: Any, prometheus: Any, kafka: Any) -> Planted:
    planted = Planted()
    backend = httpx.Client(base_url=platform.urls["backend"], timeout=30)
    email = f"observability-{uuid.uuid4().hex[:10]}@example.com"
    _ok(backend.post("/api/auth/register", json={"email": email, "password": planted.password}), 201)
    login = _ok(backend.post("/api/auth/login", json={"email": email, "password": planted.password}), 200)
    token = login["access_token"]
    planted.issued_jwt = token
    auth = {"Authorization": f"Bearer {token}"}
    # wrong password, forged bearer token, a token in the query string
    _ok(backend.post("/api/auth/login", json={"email": email, "password": planted.password + "x"}), 401)
    _ok(backend.get("/api/tasks", headers={"Authorization": f"Bearer {planted.auth_header}"}), 401)
    _ok(backend.get("/api/tasks", params={"token": planted.token}), 401)

    ws_url = platform.urls["sync"].replace("http://", "ws://") + "/ws"
    with connect(ws_url, subprotocols=["bearer", token], open_timeout=30) as ws:
        # a reminder due in ~3 s, a recurring task completed, an update, a delete
        soon = _ok(
            backend.post(
                "/api/tasks",
                headers=auth,
                json={
                    "title": "reminder soon",
                    "due_at": _iso(timedelta(seconds=63)),
                    "remind_before_minutes": 1,
                },
            ),
            201,
        )
        daily = _ok(
            backend.post(
                "/api/tasks",
                headers=auth,
                json={"title": "daily", "due_at": _iso(timedelta(hours=2)), "recurrence": {"freq": "daily"}},
            ),
            201,
        )
        conn = _ok(
            backend.post(
                "/api/tasks",
                headers=auth,
                json={"title": f"migrate postgresql://admin:{planted.connection_secret}@db:5432/todo"},
            ),
            201,
        )
        _ok(backend.patch(f"/api/tasks/{soon['id']}", headers=auth, json={"priority": "high"}), 200)
        _ok(backend.post(f"/api/tasks/{daily['id']}/complete", headers=auth), 200)
        _ok(backend.delete(f"/api/tasks/{conn['id']}", headers=auth), 204)
        _ok(backend.get("/api/tasks", headers=auth, params={"q": "daily"}), 200)
        _ok(backend.get(f"/api/tasks/{uuid.uuid4()}", headers=auth), 404)
        received = 0

        def four_pushes() -> bool:
            nonlocal received
            ws.recv(timeout=2)
            received += 1
            assert received >= 4, f"the WebSocket got {received} pushes"
            return True

        eventually(
            four_pushes, "four pushes on the WebSocket", within=30, interval=0, ignoring=(TimeoutError,)
        )

        # A publish failure: the backend's sidecar is away while a task is created.
        platform.daprd["backend"].stop()
        try:
            _ok(backend.post("/api/tasks", headers=auth, json={"title": "while the sidecar is away"}), 201)
            prometheus.wait_for("sum(todo_events_publish_failed_total) > 0", timeout=90)
        finally:
            platform.daprd["backend"].start()
        prometheus.wait_for('sum(todo_outbox_backlog{service="backend"}) == 0', timeout=120)
        # the restarted sidecar's metrics are scraped again (the live tests expect every target up)
        sidecar_metrics = f"127.0.0.1:{platform.daprd['backend'].metrics_port}"
        prometheus.wait_for(f'up{{instance="{sidecar_metrics}"}} == 1', timeout=60)

        # A poison message on task-events: every consumer dead-letters it.
        from confluent_kafka import Producer

        producer = Producer(kafka.client_config("plaintext"))
        producer.produce("task-events", key=str(uuid.uuid4()), value=json.dumps({"not": "a cloudevent"}))
        producer.flush(30)
        prometheus.wait_for("sum(todo_events_dead_lettered_total) > 0", timeout=120)
        prometheus.wait_for("sum(todo_reminders_fired_total) > 0", timeout=120)
        audit = httpx.get(f"{platform.urls['audit']}/api/audit", headers=auth, timeout=30)
        _ok(audit, 200)
    # the client closed the socket: a disconnect with a reason
    prometheus.wait_for("sum(todo_websocket_disconnects_total) > 0", timeout=60)
    return planted
