"""Every change writes its CloudEvent to the outbox in the same transaction (read from PostgreSQL)."""

from __future__ import annotations

import asyncpg
import pytest

pytestmark = pytest.mark.testbed


async def _events(dsn: str, task_id: str) -> list[dict]:
    import orjson

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT payload::text AS p, partition_key, topic FROM backend.outbox"
            " WHERE partition_key = $1 ORDER BY seq",
            task_id,
        )
    finally:
        await conn.close()
    out = []
    for row in rows:
        assert row["topic"] == "task-events" and row["partition_key"] == task_id
        out.append(orjson.loads(row["p"]))
    return out


async def test_each_change_queues_one_event_in_version_order(client, backend_dsn, user, new_task):
    t = await new_task(user, title="evented", due_at="2031-01-01T00:00:00Z", tags=["a"])
    h = user.headers
    await client.patch(f"/api/tasks/{t['id']}", json={"description": "more", "tags": None}, headers=h)
    await client.patch(f"/api/tasks/{t['id']}", json={"description": "more"}, headers=h)  # no change
    await client.post(f"/api/tasks/{t['id']}/complete", headers=h)
    await client.post(f"/api/tasks/{t['id']}/complete", headers=h)  # no change
    await client.post(f"/api/tasks/{t['id']}/reopen", headers=h)
    await client.delete(f"/api/tasks/{t['id']}", headers=h)
    events = await _events(backend_dsn, t["id"])
    assert [e["type"] for e in events] == [
        "com.todo.task.created",
        "com.todo.task.updated",
        "com.todo.task.completed",
        "com.todo.task.updated",
        "com.todo.task.deleted",
    ]
    assert [e["data"]["version"] for e in events] == [1, 2, 3, 4, 5]
    for e in events:
        assert e["specversion"] == "1.0" and e["source"] == "/todo/backend" and e["subject"] == t["id"]
        assert e["datacontenttype"] == "application/json" and e["time"].endswith("Z")
        assert e["data"]["id"] == t["id"] and e["data"]["user_id"] == str(user.id)
        assert e["data"]["series_id"] == t["id"] and e["data"]["occurrence"] == 1
        assert {"series_anchor_at", "previous_occurrence_id", "recurrence", "remind_before_minutes"} <= set(
            e["data"]
        )
        assert "traceparent" in e and "requestid" in e
    assert set(events[1]["data"]["changed_fields"]) >= {"description", "tags"}
    assert "title" not in events[1]["data"]["changed_fields"]
    assert events[1]["data"]["tags"] == [] and events[1]["data"]["description"] == "more"
    assert events[2]["data"]["status"] == "completed" and events[2]["data"]["completed_at"]
    assert events[3]["data"]["status"] == "pending" and events[3]["data"]["completed_at"] is None
    assert events[4]["data"]["title"] == "evented"
    assert len({e["id"] for e in events}) == 5


async def test_failed_validation_writes_no_event(client, backend_dsn, user, new_task):
    t = await new_task(user)
    r = await client.patch(f"/api/tasks/{t['id']}", json={"title": ""}, headers=user.headers)
    assert r.status_code == 422
    assert [e["type"] for e in await _events(backend_dsn, t["id"])] == ["com.todo.task.created"]
