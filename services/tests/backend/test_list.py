"""Listing: every filter, every sort in both orders, cursor pagination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from backend_support import register_user

pytestmark = pytest.mark.testbed


def _iso(moment: datetime) -> str:
    return moment.isoformat()


@pytest.fixture(scope="module")
async def world(client):
    """One user with a known set of tasks (module-scoped: the listing tests only read)."""
    u = await register_user(client)
    now = datetime.now(UTC).replace(microsecond=0)
    specs = [
        ("alpha report", "write the quarterly report", "high", ["work", "q3"], now - timedelta(days=2)),
        ("buy groceries", "milk and eggs", "low", ["home"], now + timedelta(days=1)),
        ("call plumber", None, "medium", ["home", "urgent"], now - timedelta(hours=1)),
        ("plan holiday", "flights and hotels", "low", [], None),
        ("review budget", "numbers for the report", "high", ["work"], now + timedelta(days=5)),
        ("fix bike", "puncture", "medium", ["home", "weekend"], None),
    ]
    tasks = {}
    for title, desc, prio, tags, due in specs:
        body = {"title": title, "priority": prio, "tags": tags}
        if desc:
            body["description"] = desc
        if due:
            body["due_at"] = _iso(due)
        r = await client.post("/api/tasks", json=body, headers=u.headers)
        assert r.status_code == 201
        tasks[title] = r.json()
    # the overdue one that is completed must not count as overdue
    r = await client.post(f"/api/tasks/{tasks['alpha report']['id']}/complete", headers=u.headers)
    tasks["alpha report"] = r.json()
    return u, tasks, now


async def _titles(client, u, **params) -> list[str]:
    r = await client.get("/api/tasks", params={"limit": 100, **params}, headers=u.headers)
    assert r.status_code == 200, r.text
    return [t["title"] for t in r.json()["items"]]


async def test_default_order_is_newest_first(client, world):
    u, tasks, _ = world
    assert await _titles(client, u) == list(reversed(tasks))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "completed"}, {"alpha report"}),
        (
            {"status": "pending"},
            {"buy groceries", "call plumber", "plan holiday", "review budget", "fix bike"},
        ),
        ({"priority": "high"}, {"alpha report", "review budget"}),
        ({"priority": ["low", "medium"]}, {"buy groceries", "call plumber", "plan holiday", "fix bike"}),
        ({"tags": "home"}, {"buy groceries", "call plumber", "fix bike"}),
        ({"tags": ["home", "urgent"]}, {"call plumber"}),
        ({"tags": "HOME, weekend"}, {"fix bike"}),
        ({"tags": ["urgent", "q3"], "tags_match": "any"}, {"call plumber", "alpha report"}),
        ({"overdue": "true"}, {"call plumber"}),
        (
            {"overdue": "false"},
            {"alpha report", "buy groceries", "plan holiday", "review budget", "fix bike"},
        ),
        ({"q": "report"}, {"alpha report", "review budget"}),
        ({"q": "eggs"}, {"buy groceries"}),
        ({"q": "reports"}, {"alpha report", "review budget"}),  # stemming
        ({"q": '"quarterly report"'}, {"alpha report"}),
        ({"q": "report -budget"}, {"alpha report"}),
        ({"q": "zebra"}, set()),
        ({"q": "home", "tags": "home"}, set()),  # tags are not searched text
        ({"priority": "high", "status": "pending"}, {"review budget"}),
    ],
)
async def test_filters(client, world, params, expected):
    u, _, _ = world
    assert set(await _titles(client, u, **params)) == expected


async def test_due_range_is_inclusive(client, world):
    u, tasks, now = world
    lo = tasks["call plumber"]["due_at"]
    hi = tasks["buy groceries"]["due_at"]
    assert set(await _titles(client, u, due_from=lo, due_to=hi)) == {"call plumber", "buy groceries"}
    assert set(await _titles(client, u, due_from=_iso(now + timedelta(days=2)))) == {"review budget"}
    assert set(await _titles(client, u, due_to=_iso(now - timedelta(days=1)))) == {"alpha report"}


@pytest.mark.parametrize(
    "params",
    [
        {"status": "open"},
        {"priority": "urgent"},
        {"sort": "title"},
        {"order": "up"},
        {"limit": 0},
        {"limit": 101},
        {"due_from": "2030-01-01T00:00:00"},
        {"overdue": "maybe"},
        {"q": " "},
        {"tags_match": "some"},
    ],
)
async def test_bad_query_parameters_get_422(client, world, params):
    u, _, _ = world
    r = await client.get("/api/tasks", params=params, headers=u.headers)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"].startswith("query.")


async def test_a_cursor_not_handed_out_gets_400_bad_cursor(client, world):
    u, _, _ = world
    r = await client.get("/api/tasks", params={"cursor": "garbage!"}, headers=u.headers)
    assert r.status_code == 400 and r.json()["type"].endswith("/bad-cursor"), r.text


def _key(task: dict, sort: str):
    return {
        "priority": {"low": 1, "medium": 2, "high": 3}[task["priority"]],
        "created": task["created_at"],
        "updated": task["updated_at"],
        "due": task["due_at"],
    }[sort]


@pytest.mark.parametrize("sort", ["priority", "due", "created", "updated"])
@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_sort_and_every_page_size_give_the_same_sequence(client, world, sort, order):
    u, tasks, _ = world
    r = await client.get("/api/tasks", params={"sort": sort, "order": order, "limit": 100}, headers=u.headers)
    full = r.json()["items"]
    assert len(full) == len(tasks)
    keyed = [t for t in full if _key(t, sort) is not None]
    nulls = [t for t in full if _key(t, sort) is None]
    assert full == keyed + nulls, "tasks without a due date come last"
    keys = [(_key(t, sort), t["id"]) for t in keyed]
    assert keys == sorted(keys, reverse=(order == "desc"))
    for size in (1, 2, 4):
        seen, cursor = [], None
        while True:
            params = {"sort": sort, "order": order, "limit": size}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/api/tasks", params=params, headers=u.headers)).json()
            assert len(page["items"]) <= size
            seen += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [t["id"] for t in seen] == [t["id"] for t in full], (sort, order, size)


async def test_pages_with_filters_and_cursor_for_another_sort(client, world):
    u, _, _ = world
    first = (await client.get("/api/tasks", params={"tags": "home", "limit": 2}, headers=u.headers)).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = (
        await client.get(
            "/api/tasks",
            params={"tags": "home", "limit": 2, "cursor": first["next_cursor"]},
            headers=u.headers,
        )
    ).json()
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    r = await client.get(
        "/api/tasks", params={"sort": "due", "cursor": first["next_cursor"]}, headers=u.headers
    )
    # A cursor of another listing is no schema violation: 400 bad-cursor, as the OpenAPI document says.
    assert r.status_code == 400 and r.json()["type"].endswith("/bad-cursor"), r.text
