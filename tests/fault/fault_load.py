"""A bounded stream of task changes through the backend API, and the invariants checked afterwards."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class LoadResult:
    changes: int = 0
    recurring_completed: set[str] = field(default_factory=set)
    reminder_tasks: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


async def register(client: httpx.AsyncClient) -> str:
    email, password = f"fault-{uuid.uuid4().hex[:10]}@example.test", uuid.uuid4().hex
    r = await client.post("/api/auth/register", json={"email": email, "password": password})
    r.raise_for_status()
    r = await client.post("/api/auth/login", json={"email": email, "password": password})
    r.raise_for_status()
    return r.json()["access_token"]


async def run_changes(
    backend_url: str, total: int = 500, rate: float = 50.0, users: int = 5, seed: int = 7
) -> LoadResult:
    """``total`` task changes at about ``rate`` per second: creates (plain, recurring, with a
    reminder due within seconds), updates, completions and deletes, spread over ``users``."""
    rng = random.Random(seed)
    result = LoadResult()
    async with httpx.AsyncClient(base_url=backend_url, timeout=60) as client:
        tokens = [await register(client) for _ in range(users)]
        live: list[tuple[str, str, str]] = []  # (token, task id, kind)
        started = time.monotonic()
        while result.changes < total:
            token = rng.choice(tokens)
            auth = {"Authorization": f"Bearer {token}"}
            now = datetime.now(UTC)
            roll = rng.random()
            try:
                if not live or roll < 0.4:
                    kind = rng.choice(["plain", "recurring", "reminder"])
                    body: dict[str, Any] = {"title": f"fault {result.changes}", "remind_before_minutes": None}
                    if kind == "recurring":
                        body |= {"due_at": iso(now + timedelta(hours=3)), "recurrence": {"freq": "daily"}}
                    elif kind == "reminder":
                        body |= {
                            "due_at": iso(now + timedelta(seconds=rng.uniform(1, 8))),
                            "remind_before_minutes": 0,
                        }
                    r = await client.post("/api/tasks", json=body, headers=auth)
                    r.raise_for_status()
                    live.append((token, r.json()["id"], kind))
                    if kind == "reminder":
                        result.reminder_tasks.add(r.json()["id"])
                else:
                    index = rng.randrange(len(live))
                    token, task_id, kind = live[index]
                    auth = {"Authorization": f"Bearer {token}"}
                    if kind == "recurring" and roll < 0.7:
                        r = await client.post(f"/api/tasks/{task_id}/complete", headers=auth)
                        r.raise_for_status()
                        result.recurring_completed.add(task_id)
                        live.pop(index)
                    elif kind != "reminder" and roll > 0.92:
                        r = await client.delete(f"/api/tasks/{task_id}", headers=auth)
                        r.raise_for_status()
                        live.pop(index)
                    else:
                        r = await client.patch(
                            f"/api/tasks/{task_id}",
                            json={"priority": rng.choice(["low", "medium", "high"])},
                            headers=auth,
                        )
                        r.raise_for_status()
                result.changes += 1
            except httpx.HTTPError as exc:
                result.errors.append(f"{type(exc).__name__}: {exc}")
                if len(result.errors) > 20:
                    raise
            ahead = result.changes / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
    return result


# -- invariants, read straight from each service's schema --------------------------------------------


def published_event_ids(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [str(r[0]) for r in conn.execute("SELECT event_id FROM backend.outbox")]


def unpublished_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM backend.outbox WHERE sent_at IS NULL").fetchone()[0]


def audit_event_ids(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM audit.audit_log")]


def occurrences_of(dsn: str, task_ids: set[str]) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT previous_occurrence_id::text, count(*) FROM backend.tasks "
            "WHERE previous_occurrence_id = ANY(%s::uuid[]) GROUP BY 1",
            (list(task_ids),),
        ).fetchall()
    return {task_id: 0 for task_id in task_ids} | dict(rows)


def reminder_firings(dsn: str, task_ids: set[str]) -> dict[str, int]:
    """How many reminder.due events the notification service queued per task."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT partition_key, count(*) FROM notification.outbox "
            "WHERE event_type = 'com.todo.reminder.due' AND partition_key = ANY(%s) GROUP BY 1",
            (list(task_ids),),
        ).fetchall()
    return {task_id: 0 for task_id in task_ids} | dict(rows)


def reminders_unpublished(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM notification.outbox WHERE sent_at IS NULL").fetchone()[0]
