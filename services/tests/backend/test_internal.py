"""The next-occurrence endpoint used by the recurring-task service through Dapr invocation."""

from __future__ import annotations

import asyncio

import pytest
from backend_support import APP_TOKEN

pytestmark = pytest.mark.testbed

DAPR = {"dapr-api-token": APP_TOKEN}


def _url(task_id: str) -> str:
    return f"/internal/tasks/{task_id}/next-occurrence"


async def test_creates_the_next_occurrence_exactly_once(client, user, new_task):
    first = await new_task(
        user,
        title="water plants",
        description="all of them",
        priority="high",
        tags=["home"],
        remind_before_minutes=60,
        due_at="2031-05-01T08:00:00Z",
        recurrence={"freq": "weekly", "interval": 1},
    )
    await client.post(f"/api/tasks/{first['id']}/complete", headers=user.headers)
    body = {"due_at": "2031-05-08T08:00:00Z", "series_anchor_at": "2031-05-01T08:00:00Z"}
    r = await client.post(_url(first["id"]), json=body, headers=DAPR)
    assert r.status_code == 201, r.text
    nxt = r.json()
    assert nxt["id"] != first["id"]
    assert nxt["series_id"] == first["id"] and nxt["occurrence"] == 2
    assert nxt["previous_occurrence_id"] == first["id"]
    assert nxt["series_anchor_at"] == first["due_at"]
    assert nxt["due_at"] == "2031-05-08T08:00:00Z"
    assert nxt["status"] == "pending" and nxt["version"] == 1 and nxt["user_id"] == str(user.id)
    for name in ("title", "description", "priority", "tags", "remind_before_minutes", "recurrence"):
        assert nxt[name] == first[name], name
    # repeats (also concurrent ones) return the same occurrence
    again = await asyncio.gather(*(client.post(_url(first["id"]), json=body, headers=DAPR) for _ in range(5)))
    assert {a.status_code for a in again} == {200}
    assert {a.json()["id"] for a in again} == {nxt["id"]}
    listed = (await client.get("/api/tasks", params={"q": "water plants"}, headers=user.headers)).json()[
        "items"
    ]
    assert len(listed) == 2
    # the owner sees it like any task
    assert (await client.get(f"/api/tasks/{nxt['id']}", headers=user.headers)).status_code == 200


async def test_anchor_comes_from_the_request_only_when_the_series_has_none(client, user, new_task):
    first = await new_task(user, recurrence={"freq": "daily"})
    assert first["series_anchor_at"] is None
    body = {"due_at": None, "series_anchor_at": "2031-01-01T00:00:00Z"}
    nxt = (await client.post(_url(first["id"]), json=body, headers=DAPR)).json()
    assert nxt["series_anchor_at"] == "2031-01-01T00:00:00Z" and nxt["due_at"] is None
    third = (
        await client.post(_url(nxt["id"]), json={"series_anchor_at": "2040-01-01T00:00:00Z"}, headers=DAPR)
    ).json()
    assert third["series_anchor_at"] == "2031-01-01T00:00:00Z" and third["occurrence"] == 3


@pytest.mark.parametrize("headers", [{}, {"dapr-api-token": "wrong"}, {"Authorization": "Bearer x"}])
async def test_requires_the_app_api_token(client, user, new_task, headers):
    t = await new_task(user, recurrence={"freq": "daily"})
    r = await client.post(_url(t["id"]), json={}, headers=headers)
    assert r.status_code == 401
    r = await client.post(_url(t["id"]), json={}, headers=user.headers)  # a user token is not enough
    assert r.status_code == 401


async def test_refusals(client, user, new_task):
    import uuid

    plain = await new_task(user)
    r = await client.post(_url(plain["id"]), json={}, headers=DAPR)
    assert r.status_code == 409 and r.json()["type"].endswith("/not-recurring")
    r = await client.post(_url(str(uuid.uuid4())), json={}, headers=DAPR)
    assert r.status_code == 404
    once = await new_task(user, recurrence={"freq": "daily", "count": 1})
    r = await client.post(_url(once["id"]), json={}, headers=DAPR)
    assert r.status_code == 409 and r.json()["type"].endswith("/series-ended")
    until = await new_task(user, recurrence={"freq": "daily", "until": "2031-01-01T00:00:00Z"})
    r = await client.post(_url(until["id"]), json={"due_at": "2031-01-02T00:00:00Z"}, headers=DAPR)
    assert r.status_code == 409
    r = await client.post(_url(until["id"]), json={"due_at": "2031-01-02T00:00:00"}, headers=DAPR)
    assert r.status_code == 422
