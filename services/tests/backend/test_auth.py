"""Registration, login and the 401s for bad tokens."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from backend_support import JWT_SECRET, register_user

pytestmark = pytest.mark.testbed


async def test_register_then_login_gives_a_working_token(client):
    u = await register_user(client)
    r = await client.get("/api/tasks", headers=u.headers)
    assert r.status_code == 200
    assert r.json() == {"items": [], "next_cursor": None}


async def test_email_is_case_insensitive_and_unique(client):
    u = await register_user(client)
    r = await client.post("/api/auth/register", json={"email": u.email.upper(), "password": "another-pass"})
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/email-already-registered")
    r = await client.post("/api/auth/login", json={"email": u.email.upper(), "password": u.password})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": "long-enough"}, "body.email"),
        ({"email": "a@example.com", "password": "short"}, "body.password"),
        ({"email": "a@example.com"}, "body.password"),
        ({"email": "a\x00b@example.com", "password": "long-enough"}, "body.email"),
    ],
)
async def test_register_validation_names_the_field(client, body, field):
    r = await client.post("/api/auth/register", json=body)
    assert r.status_code == 422
    problem = r.json()
    assert problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]]


async def test_wrong_password_and_unknown_email_look_the_same(client):
    u = await register_user(client)
    wrong = await client.post("/api/auth/login", json={"email": u.email, "password": u.password + "x"})
    unknown = await client.post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": u.password}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["type"] == unknown.json()["type"]
    assert "access_token" not in wrong.text


def _token(secret: str, **claims) -> str:
    now = int(time.time())
    base = {"sub": str(uuid.uuid4()), "iat": now, "exp": now + 600}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, secret, algorithm="HS256")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer not.a.jwt",
        "Basic dXNlcjpwYXNz",
        "Bearer " + _token(JWT_SECRET, exp=int(time.time()) - 10, iat=int(time.time()) - 700),
        "Bearer " + _token("some-other-secret-" + "y" * 32),
        "Bearer " + _token(JWT_SECRET, sub="not-a-uuid"),
        "Bearer " + _token(JWT_SECRET, exp=None),
        "Bearer "
        + jwt.encode({"sub": str(uuid.uuid4()), "exp": 9999999999, "iat": 1}, None, algorithm="none"),
    ],
    ids=[
        "missing",
        "empty",
        "malformed",
        "basic",
        "expired",
        "wrong-secret",
        "bad-sub",
        "no-exp",
        "alg-none",
    ],
)
async def test_bad_tokens_get_401_problem(client, header):
    headers = {"Authorization": header} if header else {}
    r = await client.get("/api/tasks", headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers.get("www-authenticate") == "Bearer"


@pytest.mark.parametrize(
    "raw",
    [
        '{"email": "a\\u0000b@example.com", "password": "whatever1"}',
        '{"email": "a@example.com", "password": "\\ud800\\ud800\\ud800xx"}',
    ],
)
async def test_login_with_unstorable_text_is_a_validation_error(client, raw):
    r = await client.post(
        "/api/auth/login", content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
