"""Health, readiness, metrics and OpenAPI of the backend."""

from __future__ import annotations

import re
import uuid

import pytest
from backend_support import JWT_SECRET, make_settings, running_app
from todo.common.auth import create_access_token

pytestmark = pytest.mark.testbed


async def test_liveness_and_readiness_without_a_sidecar(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 503  # the sidecar (discard port) is not there
    assert r.json()["checks"] == {"database": "ok", "sidecar": "failing"}


async def test_readiness_fails_when_the_database_is_unreachable():
    settings = make_settings("postgresql://todo:x@127.0.0.1:9/none", dapr_ready_check=False)
    async with running_app(settings) as c:
        r = await c.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"] == {"database": "failing"}
        # a request needing the database gets a 503 problem, not a 500
        r = await c.post("/api/auth/login", json={"email": "a@example.com", "password": "whatever"})
        assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
        # the create path runs on the driver connection (todo.common.db.DriverStatement): same answer
        token = create_access_token(uuid.uuid4(), JWT_SECRET)
        r = await c.post("/api/tasks", json={"title": "t"}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 503 and r.json()["type"].endswith("database-unavailable")


async def test_metrics_use_route_templates_and_no_ids(client, user, new_task):
    t = await new_task(user)
    await client.get(f"/api/tasks/{t['id']}", headers=user.headers)
    await client.get("/api/tasks/00000000-0000-0000-0000-000000000000", headers=user.headers)
    text = (await client.get("/metrics")).text
    assert 'todo_http_requests_total{method="GET",route="/api/tasks/{task_id}",status="200"}' in text
    assert 'todo_http_requests_total{method="GET",route="/api/tasks/{task_id}",status="404"}' in text
    assert "todo_http_request_duration_seconds_bucket" in text
    assert "todo_http_requests_in_flight" in text
    uuid_re = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    assert not [line for line in text.splitlines() if line.startswith("todo_") and uuid_re.search(line)]


def _sample(text: str, series: str) -> float:
    """The value of one series in a /metrics exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_labels_stay_bounded(client, user):
    series = {
        'todo_http_requests_total{method="other",route="/api/tasks",status="405"}',
        'todo_http_requests_total{method="DELETE",route="/api/tasks",status="405"}',
        'todo_http_requests_total{method="GET",route="unmatched",status="404"}',
    }
    before = (await client.get("/metrics")).text  # the registry is the process's: other tests count too
    for _ in range(2):  # the second round comes from the middleware's template cache
        await client.request("BREW", "/api/tasks", headers=user.headers)
        await client.delete("/api/tasks", headers=user.headers)
        await client.get("/no/such/page")
    after = (await client.get("/metrics")).text
    assert {s: _sample(after, s) - _sample(before, s) for s in series} == dict.fromkeys(series, 2.0)
    assert "BREW" not in after and "/no/such/page" not in after


async def test_request_id_is_echoed_or_created(client):
    r = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


async def test_openapi_documents_every_route_and_the_bearer_scheme(client):
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in [
        "/api/auth/register",
        "/api/auth/login",
        "/api/tasks",
        "/api/tasks/{task_id}",
        "/api/tasks/{task_id}/complete",
        "/api/tasks/{task_id}/reopen",
        "/internal/tasks/{task_id}/next-occurrence",
        "/healthz",
        "/readyz",
    ]:
        assert path in paths, path
    assert set(paths["/api/tasks/{task_id}"]) == {"get", "patch", "delete"}
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert "application/problem+json" in paths["/api/tasks/{task_id}"]["get"]["responses"]["404"]["content"]
