"""Task CRUD, field rules, PATCH clearing, complete/reopen idempotence and isolation between users."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from backend_support import register_user

pytestmark = pytest.mark.testbed


async def test_create_sets_defaults_and_series_fields(client, user):
    r = await client.post("/api/tasks", json={"title": "  Buy milk  "}, headers=user.headers)
    assert r.status_code == 201
    t = r.json()
    assert t["title"] == "Buy milk"
    assert t["status"] == "pending" and t["priority"] == "medium"
    assert t["tags"] == [] and t["description"] is None and t["due_at"] is None
    assert t["remind_before_minutes"] == 15
    assert t["version"] == 1
    assert t["user_id"] == str(user.id)
    assert t["series_id"] == t["id"] and t["occurrence"] == 1
    assert t["previous_occurrence_id"] is None and t["series_anchor_at"] is None
    got = await client.get(f"/api/tasks/{t['id']}", headers=user.headers)
    assert got.status_code == 200 and got.json() == t


async def test_fields_are_normalised_and_stored_in_utc(client, user, new_task):
    t = await new_task(
        user,
        title="Report",
        description="quarterly numbers",
        priority="high",
        tags=[" Work ", "work", "URGENT", "q3"],
        due_at="2031-03-01T09:30:00+02:00",
        remind_before_minutes=None,
        recurrence={"freq": "weekly", "interval": 2, "until": "2031-12-31T00:00:00-05:00"},
    )
    assert t["tags"] == ["work", "urgent", "q3"]
    assert datetime.fromisoformat(t["due_at"]) == datetime(2031, 3, 1, 7, 30, tzinfo=UTC)
    assert t["due_at"].endswith("Z")
    assert t["series_anchor_at"] == t["due_at"]
    assert t["remind_before_minutes"] is None
    assert t["recurrence"] == {
        "freq": "weekly",
        "interval": 2,
        "until": "2031-12-31T05:00:00Z",
        "count": None,
    }


async def test_create_answers_exactly_what_get_and_the_response_model_give(client, user):
    """The create response is the event's snapshot, not TaskResponse's own rendering: both must agree
    on every field, format and the field order, whatever the task holds."""
    from todo.backend.schemas import TaskResponse

    bodies = [
        {"title": "plain"},
        {
            "title": "everything",
            "description": "d\u00e9tails \U0001f600",
            "priority": "low",
            "tags": ["b", "A"],
            "due_at": "2031-03-01T09:30:00+02:00",  # whole seconds: no fraction in the JSON
            "remind_before_minutes": 0,
            "recurrence": {"freq": "monthly", "interval": 3, "count": 4},
        },
        {"title": "fraction", "due_at": "2031-03-01T09:30:00.000250Z", "remind_before_minutes": None},
    ]
    for body in bodies:
        r = await client.post("/api/tasks", json=body, headers=user.headers)
        assert r.status_code == 201, r.text
        created = r.json()
        assert list(created) == list(TaskResponse.model_fields)
        assert created == TaskResponse.model_validate(created).model_dump(mode="json")
        got = await client.get(f"/api/tasks/{created['id']}", headers=user.headers)
        assert got.json() == created


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": ""}, "body.title"),
        ({"title": "   "}, "body.title"),
        ({"title": "x" * 201}, "body.title"),
        ({"title": "ok", "description": "d" * 2001}, "body.description"),
        ({"title": "ok", "priority": "urgent"}, "body.priority"),
        ({"title": "ok", "tags": [f"t{i}" for i in range(11)]}, "body.tags"),
        ({"title": "ok", "tags": ["  "]}, "body.tags"),
        ({"title": "ok", "tags": ["x" * 51]}, "body.tags"),
        ({"title": "ok", "due_at": "2031-03-01T09:30:00"}, "body.due_at"),
        ({"title": "ok", "due_at": "0001-01-01T00:00:00+05:00"}, "body.due_at"),
        ({"title": "ok", "remind_before_minutes": -1}, "body.remind_before_minutes"),
        ({"title": "ok", "recurrence": {"freq": "hourly"}}, "body.recurrence.freq"),
        ({"title": "ok", "recurrence": {"freq": "daily", "interval": 0}}, "body.recurrence.interval"),
        ({"title": "ok", "recurrence": {"freq": "daily", "count": 0}}, "body.recurrence.count"),
        ({"title": "ok", "status": "completed"}, "body.status"),
        ({"title": "nul\x00byte"}, "body.title"),
        ('{"title": "\\ud800 lone surrogate"}', "body.title"),
    ],
)
async def test_invalid_fields_get_422_with_the_field_path(client, user, body, field):
    if isinstance(body, str):  # raw JSON text (escapes the client library would refuse to encode)
        headers = {**user.headers, "content-type": "application/json"}
        r = await client.post("/api/tasks", content=body.encode(), headers=headers)
    else:
        r = await client.post("/api/tasks", json=body, headers=user.headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    fields = [e["field"] for e in r.json()["errors"]]
    assert any(f.startswith(field) for f in fields), fields


async def test_ten_tags_are_fine_and_duplicates_are_dropped(client, user, new_task):
    # at most 10 tags as sent (the OpenAPI maxItems), so a schema-valid list is never refused
    t = await new_task(user, tags=[f"T{i}" for i in range(8)] + ["t0", " T1 "])
    assert len(t["tags"]) == 8
    eleven = {"title": "ok", "tags": [f"T{i}" for i in range(10)] + ["t0"]}
    assert (await client.post("/api/tasks", json=eleven, headers=user.headers)).status_code == 422


async def test_patch_changes_only_what_is_sent_and_bumps_version(client, user, new_task):
    t = await new_task(user, description="keep me", priority="low", tags=["a"])
    r = await client.patch(f"/api/tasks/{t['id']}", json={"title": "renamed"}, headers=user.headers)
    assert r.status_code == 200
    u = r.json()
    assert u["title"] == "renamed" and u["description"] == "keep me" and u["tags"] == ["a"]
    assert u["version"] == 2
    assert u["updated_at"] > t["updated_at"] and u["created_at"] == t["created_at"]


async def test_patch_null_clears_optional_fields(client, user, new_task):
    t = await new_task(
        user,
        description="d",
        tags=["x"],
        due_at="2031-01-01T00:00:00Z",
        recurrence={"freq": "daily"},
        remind_before_minutes=30,
    )
    body = {
        "description": None,
        "tags": None,
        "due_at": None,
        "recurrence": None,
        "remind_before_minutes": None,
    }
    r = await client.patch(f"/api/tasks/{t['id']}", json=body, headers=user.headers)
    assert r.status_code == 200
    u = r.json()
    assert u["description"] is None and u["tags"] == [] and u["due_at"] is None
    assert u["recurrence"] is None and u["remind_before_minutes"] is None
    assert u["version"] == 2


@pytest.mark.parametrize("body", [{"title": None}, {"priority": None}, {"title": ""}, {"bogus": 1}])
async def test_patch_rejects_clearing_required_fields(client, user, new_task, body):
    t = await new_task(user)
    r = await client.patch(f"/api/tasks/{t['id']}", json=body, headers=user.headers)
    assert r.status_code == 422


async def test_patch_without_a_real_change_keeps_the_version(client, user, new_task):
    t = await new_task(user, title="same", tags=["a"])
    r = await client.patch(
        f"/api/tasks/{t['id']}", json={"title": "same", "tags": ["A "]}, headers=user.headers
    )
    assert r.status_code == 200 and r.json()["version"] == 1
    r = await client.patch(f"/api/tasks/{t['id']}", json={}, headers=user.headers)
    assert r.status_code == 200 and r.json()["version"] == 1


async def test_complete_and_reopen_are_idempotent(client, user, new_task):
    t = await new_task(user)
    url = f"/api/tasks/{t['id']}"
    first = (await client.post(url + "/complete", headers=user.headers)).json()
    again = (await client.post(url + "/complete", headers=user.headers)).json()
    assert first["status"] == again["status"] == "completed"
    assert first["version"] == again["version"] == 2
    assert first["completed_at"] is not None and again["completed_at"] == first["completed_at"]
    reopened = (await client.post(url + "/reopen", headers=user.headers)).json()
    again = (await client.post(url + "/reopen", headers=user.headers)).json()
    assert reopened["status"] == again["status"] == "pending"
    assert reopened["version"] == again["version"] == 3
    assert reopened["completed_at"] is None


async def test_delete_then_gone(client, user, new_task):
    t = await new_task(user)
    r = await client.delete(f"/api/tasks/{t['id']}", headers=user.headers)
    assert r.status_code == 204
    for method, suffix in [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/complete")]:
        kwargs = {"json": {"title": "x"}} if method == "PATCH" else {}
        r = await client.request(method, f"/api/tasks/{t['id']}{suffix}", headers=user.headers, **kwargs)
        assert r.status_code == 404
        assert r.json()["type"].endswith("/task-not-found")


async def test_other_users_tasks_are_invisible(client, user, new_task):
    mine = await new_task(user, title="secret plan", tags=["private"])
    other = await register_user(client)
    url = f"/api/tasks/{mine['id']}"
    missing = f"/api/tasks/{uuid.uuid4()}"
    for method, suffix, body in [
        ("GET", "", None),
        ("PATCH", "", {"title": "hijacked"}),
        ("POST", "/complete", None),
        ("POST", "/reopen", None),
        ("DELETE", "", None),
    ]:
        r = await client.request(method, url + suffix, headers=other.headers, json=body)
        r_missing = await client.request(method, missing + suffix, headers=other.headers, json=body)
        assert r.status_code == 404, (method, suffix)
        assert r.json()["type"] == r_missing.json()["type"]  # existence does not leak
    listed = (await client.get("/api/tasks", params={"q": "secret"}, headers=other.headers)).json()
    assert listed["items"] == []
    still = (await client.get(url, headers=user.headers)).json()
    assert still["title"] == "secret plan" and still["version"] == 1 and still["status"] == "pending"


async def test_problem_details_for_unknown_routes_and_methods(client, user):
    r = await client.get("/api/nope", headers=user.headers)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = await client.put("/api/tasks", headers=user.headers)
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"
    r = await client.get("/api/tasks/not-a-uuid", headers=user.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "path.task_id"
    r = await client.post(
        "/api/tasks", content=b"{not json", headers={**user.headers, "content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["type"].endswith("/bad-request")  # malformed: 400, not 422


async def test_every_commit_that_queued_events_wakes_the_relay_and_no_other(client, user, new_task):
    """One after-commit hook wakes the relay (routes do not): creates (one driver statement) and the
    session commands that queued an event wake it; no-op commands, reads and logins do not."""
    from todo.backend.service import wake_on_commit

    wakes: list[str] = []
    current = ["?"]
    stop = wake_on_commit(client.app.state.db.engine, lambda: wakes.append(current[0]))
    try:
        current[0] = "create"
        task = await new_task(user)
        url = f"/api/tasks/{task['id']}"
        steps = [
            ("update", "PATCH", url, {"title": "new title"}),
            ("same update", "PATCH", url, {"title": "new title"}),
            ("complete", "POST", f"{url}/complete", None),
            ("complete again", "POST", f"{url}/complete", None),
            ("read", "GET", url, None),
            ("list", "GET", "/api/tasks", None),
            ("delete", "DELETE", url, None),
        ]
        for name, method, path, body in steps:
            current[0] = name
            r = await client.request(method, path, json=body, headers=user.headers)
            assert r.status_code < 300, r.text
        current[0] = "login"
        r = await client.post("/api/auth/login", json={"email": user.email, "password": user.password})
        assert r.status_code == 200
    finally:
        stop()
    assert wakes == ["create", "update", "complete", "delete"]
