"""The floor of the backend benchmark: bare FastAPI + asyncpg doing the same insert and select as the
backend's create-task and list-tasks, with none of its validation, auth, events or instrumentation.

Run: DATABASE_URL=postgresql://... uvicorn --factory floor_app:create_app
"""

from __future__ import annotations

import contextlib
import os
import uuid
from datetime import UTC, datetime

import asyncpg
from fastapi import FastAPI, Request

INSERT = """
INSERT INTO backend.tasks (id, user_id, title, description, status, priority, tags, due_at,
  remind_before_minutes, recurrence, completed_at, version, series_id, occurrence, previous_occurrence_id,
  series_anchor_at, created_at, updated_at)
VALUES ($1, $2, $3, NULL, 'pending', 'medium', '{}', NULL, 15, NULL, NULL, 1, $1, 1, NULL, NULL, $4, $4)
"""
SELECT = """
SELECT id, user_id, title, description, status, priority, tags, due_at, remind_before_minutes,
  recurrence, completed_at, version, series_id, occurrence, previous_occurrence_id, series_anchor_at,
  created_at, updated_at
FROM backend.tasks WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT 21
"""


def create_app() -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        pool_size = int(os.environ.get("FLOOR_POOL_SIZE", "10"))
        app.state.pool = await asyncpg.create_pool(
            os.environ["DATABASE_URL"], min_size=min(5, pool_size), max_size=pool_size
        )
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)
    user_id = uuid.UUID(os.environ["FLOOR_USER_ID"])

    @app.post("/api/tasks", status_code=201)
    async def create(request: Request, body: dict) -> dict:
        task_id = uuid.uuid4()
        now = datetime.now(UTC)
        async with request.app.state.pool.acquire() as conn:
            await conn.execute(INSERT, task_id, user_id, str(body.get("title", "t")), now)
        return {"id": str(task_id), "title": body.get("title"), "created_at": now.isoformat()}

    @app.get("/api/tasks")
    async def list_tasks(request: Request) -> dict:
        async with request.app.state.pool.acquire() as conn:
            rows = await conn.fetch(SELECT, user_id)
        items = [
            {k: (str(v) if v is not None and not isinstance(v, int | list) else v) for k, v in r.items()}
            for r in rows[:20]
        ]
        return {"items": items, "next_cursor": None}

    return app
