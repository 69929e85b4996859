"""End-to-end fixtures: configured only by base URLs, so the same tests run against the test bed's
processes and against a cluster through port-forward.

    E2E_BACKEND_URL   e.g. http://127.0.0.1:8000   (REST API)
    E2E_AUDIT_URL     e.g. http://127.0.0.1:8001   (GET /api/audit)
    E2E_SYNC_URL      e.g. http://127.0.0.1:8002   (WebSocket /ws; http:// or ws://)

When none is set, the ``todo_platform`` fixture starts the whole application on the test bed.
"""

from __future__ import annotations

import os
import uuid

import httpx
import pytest
from e2e_support import Endpoints, User


@pytest.fixture(scope="session")
def endpoints(request) -> Endpoints:
    # named in full, so that a search for a variable finds where it is read
    env = {
        "backend": os.environ.get("E2E_BACKEND_URL"),
        "audit": os.environ.get("E2E_AUDIT_URL"),
        "sync": os.environ.get("E2E_SYNC_URL"),
    }
    if all(env.values()):
        return Endpoints(**{k: v.rstrip("/") for k, v in env.items() if v})
    if any(env.values()):
        missing = ", ".join(f"E2E_{k.upper()}_URL" for k, v in env.items() if not v)
        raise pytest.UsageError(f"set all three E2E_*_URL variables (missing {missing})")
    platform = request.getfixturevalue("todo_platform")
    return Endpoints(platform.urls["backend"], platform.urls["audit"], platform.urls["sync"])


@pytest.fixture
async def new_user(endpoints: Endpoints):
    users: list[User] = []

    async def make() -> User:
        email = f"e2e-{uuid.uuid4().hex[:12]}@example.test"
        password = f"pw-{uuid.uuid4().hex}"
        async with httpx.AsyncClient(base_url=endpoints.backend, timeout=30) as c:
            r = await c.post("/api/auth/register", json={"email": email, "password": password})
            assert r.status_code == 201, r.text
            r = await c.post("/api/auth/login", json={"email": email, "password": password})
            assert r.status_code == 200, r.text
            body = r.json()
        user = User(endpoints, body["access_token"], str(body["user_id"]))
        users.append(user)
        return user

    yield make
    for user in users:
        await user.aclose()
