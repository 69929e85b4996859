"""The flows of issue 4, black-box over HTTP and WebSocket."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from e2e_support import eventually, receive_until

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_task_creation_reaches_the_audit_log(new_user):
    user = await new_user()
    task = await user.create_task(title="Audit me", priority="high")

    async def audited():
        return await user.audit(task_id=task["id"])

    [entry] = await eventually(audited, "the task.created audit row")
    assert entry["type"] == "com.todo.task.created"
    assert entry["task_id"] == task["id"]
    assert entry["data"]["title"] == "Audit me"
    assert entry["version"] == task["version"]
    other = await new_user()
    assert await other.audit(task_id=task["id"]) == []


async def test_full_lifecycle_leaves_the_exact_audit_trail(new_user):
    user = await new_user()
    task = await user.create_task(title="Lifecycle")
    await user.patch_task(task["id"], title="Lifecycle, renamed")
    await user.action(task["id"], "complete")
    await user.action(task["id"], "reopen")
    await user.delete_task(task["id"])
    expected = ["created", "updated", "completed", "updated", "deleted"]

    # The deletion is the last event the backend writes for the task, and the audit service reads a
    # task's events in order (one partition per task id): once its row shows, any extra row (a
    # duplicate) written before it has been audited too.
    async def trail():
        items = await user.audit(task_id=task["id"])
        return items if any(i["type"] == "com.todo.task.deleted" for i in items) else None

    items = await eventually(trail, "the task.deleted audit row")
    assert [i["type"].removeprefix("com.todo.task.") for i in items] == expected
    assert [i["version"] for i in items] == [1, 2, 3, 4, 5]
    assert items[1]["data"]["title"] == "Lifecycle, renamed"
    assert "title" in items[1]["data"]["changed_fields"]
    assert len({i["event_id"] for i in items}) == 5


async def test_completing_a_recurring_task_creates_the_next_occurrence_once(new_user):
    user = await new_user()
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    task = await user.create_task(
        title="Daily standup", due_at=iso(due), recurrence={"freq": "daily", "interval": 1}
    )
    await user.action(task["id"], "complete")

    async def next_one():
        return [t for t in await user.tasks() if t["previous_occurrence_id"] == task["id"]]

    [nxt] = await eventually(next_one, "the next occurrence")
    assert nxt["status"] == "pending"
    assert nxt["occurrence"] == 2
    assert datetime.fromisoformat(nxt["due_at"]) == due + timedelta(days=1)
    assert nxt["series_id"] == task["series_id"]

    # Reopen and complete again: the series still has exactly one next occurrence.
    await user.action(task["id"], "reopen")
    await user.action(task["id"], "complete")
    # The recurring-task service reads the task's events in order (one partition per task id). With
    # the next occurrence deleted, a third completion creates a new one: once that shows, the
    # second completion has been handled too, and must have left the first next occurrence alone.
    await user.delete_task(nxt["id"])
    await user.action(task["id"], "reopen")
    await user.action(task["id"], "complete")

    async def replacement():
        return [t for t in await next_one() if t["id"] != nxt["id"]]

    [again] = await eventually(replacement, "a new next occurrence after the third completion")
    assert [t["id"] for t in await next_one()] == [again["id"]]
    assert again["occurrence"] == 2


async def test_overdue_daily_task_spawns_a_future_occurrence(new_user):
    user = await new_user()
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3, hours=1)
    task = await user.create_task(
        title="Overdue", due_at=iso(due), recurrence={"freq": "daily"}, remind_before_minutes=None
    )
    before = datetime.now(UTC)
    await user.action(task["id"], "complete")

    async def next_one():
        return [t for t in await user.tasks() if t["previous_occurrence_id"] == task["id"]]

    [nxt] = await eventually(next_one, "the next occurrence")
    next_due = datetime.fromisoformat(nxt["due_at"])
    assert next_due > before
    assert next_due - before <= timedelta(days=1)
    assert (next_due - due) % timedelta(days=1) == timedelta(0)


async def test_reminder_fires_and_reaches_the_websocket(new_user):
    user = await new_user()
    async with user.websocket() as ws:
        due = datetime.now(UTC) + timedelta(minutes=1, seconds=3)
        task = await user.create_task(title="Call the dentist", due_at=iso(due), remind_before_minutes=1)
        message = await receive_until(
            ws, lambda m: m["type"] == "reminder.due" and m["task"]["id"] == task["id"], "the reminder"
        )
    assert message["task"]["title"] == "Call the dentist"
    assert message["reminder"]["late"] is False
    assert message["event_id"] and message["time"]


async def test_update_and_delete_reach_every_websocket_of_the_user(new_user):
    user = await new_user()
    async with user.websocket() as ws1, user.websocket() as ws2:
        task = await user.create_task(title="Sync me")
        await user.patch_task(task["id"], priority="low")
        await user.delete_task(task["id"])
        for ws in (ws1, ws2):
            got = []
            for kind in ("task.created", "task.updated", "task.deleted"):
                got.append(
                    await receive_until(
                        ws, lambda m, kind=kind: m["type"] == kind and m["task"]["id"] == task["id"], kind
                    )
                )
            assert [m["version"] for m in got] == [1, 2, 3]
            assert got[1]["task"]["priority"] == "low"
            assert all(set(m) >= {"type", "event_id", "time", "version", "task"} for m in got)


async def test_websocket_with_a_bad_token_is_closed_with_1008(endpoints):
    import websockets

    async with websockets.connect(endpoints.websocket + "?token=not-a-token") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd.code == 1008
