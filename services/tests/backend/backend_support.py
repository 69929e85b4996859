"""Fixtures of the backend tests: a migrated database on the test bed's PostgreSQL, the app in-process
(ASGI) and users with tokens."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from todo.backend.app import create_app
from todo.backend.settings import BackendSettings
from todo.common.migrations import upgrade_async

JWT_SECRET = "test-jwt-secret-" + "x" * 32
APP_TOKEN = "test-app-token-0123456789"


@pytest.fixture(scope="session")
async def backend_dsn(pg) -> str:
    dsn = pg.create_database("backend_api")
    await upgrade_async("backend", dsn)
    return dsn


def make_settings(dsn: str, **overrides: object) -> BackendSettings:
    values: dict[str, object] = {
        "database_url": dsn,
        "jwt_secret": JWT_SECRET,
        "app_api_token": APP_TOKEN,
        "dapr_http_port": 9,  # discard port: no sidecar unless a test starts one
        "outbox_relay": False,
        "log_level": "WARNING",
        # every in-process request comes from one client address
        "auth_client_burst": 1_000_000,
    }
    values.update(overrides)
    return BackendSettings(**values)


@contextlib.asynccontextmanager
async def running_app(settings: BackendSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://backend") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture(scope="session")
async def client(backend_dsn: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings(backend_dsn)) as c:
        yield c


@dataclass
class ApiUser:
    email: str
    password: str
    id: uuid.UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def register_user(client: httpx.AsyncClient) -> ApiUser:
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    password = "pw-" + secrets.token_urlsafe(12)
    r = await client.post("/api/auth/register", json={"email": email, "password": password})
    assert r.status_code == 201, r.text
    r = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    body = r.json()
    return ApiUser(email, password, uuid.UUID(body["user_id"]), body["access_token"])


@pytest.fixture
async def user(client: httpx.AsyncClient) -> ApiUser:
    return await register_user(client)


@pytest.fixture
def new_task(client: httpx.AsyncClient) -> Callable[..., object]:
    async def create(u: ApiUser, **fields: object) -> dict:
        body = {"title": "a task", **fields}
        r = await client.post("/api/tasks", json=body, headers=u.headers)
        assert r.status_code == 201, r.text
        return r.json()

    return create
