"""Issue 17 item 8: a rolling restart of the backend under steady load loses no request and no event.

Two backend replicas (each with its daprd) behind a balancer that does what an endpoints
controller does: it sends requests only to replicas whose /readyz answered 200 at its last poll.
One replica is restarted (SIGTERM, wait, start) while the load runs; every request must be answered
201, and every created task's event must be published.
"""

from __future__ import annotations

import asyncio
import itertools

import httpx
import psycopg
import pytest
from fault_load import register
from testbed.polling import eventually

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

DRAIN_SECONDS = "3"
POLL_SECONDS = 0.2
WORKERS = 4


class ReadinessBalancer:
    """Round robin over the replicas whose last /readyz poll answered 200."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.ready = dict.fromkeys(urls, True)
        self.saw_not_ready: set[str] = set()
        self._turn = itertools.count()

    async def poll(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for url in self.urls:
                try:
                    ok = (await client.get(f"{url}/readyz", timeout=2)).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.ready[url] = ok
                if not ok:
                    self.saw_not_ready.add(url)
            await asyncio.sleep(POLL_SECONDS)

    def pick(self) -> str:
        ready = [url for url in self.urls if self.ready[url]]
        candidates = ready or self.urls
        return candidates[next(self._turn) % len(candidates)]


async def test_a_rolling_restart_under_steady_load_loses_no_request_and_no_event(todo_platform):
    platform = todo_platform
    platform.extra_env["backend"] = {"SHUTDOWN_DRAIN_SECONDS": DRAIN_SECONDS}
    second = None
    try:
        platform.restart_app("backend")
        second = await asyncio.to_thread(platform.add_replica, "backend")
        first_url, second_url = platform.urls["backend"], platform.urls[second]
        balancer = ReadinessBalancer([first_url, second_url])
        created: list[str] = []
        failures: list[str] = []
        stop = asyncio.Event()
        async with httpx.AsyncClient(timeout=60) as client:
            async with httpx.AsyncClient(base_url=first_url, timeout=60) as api:
                token = await register(api)
            auth = {"Authorization": f"Bearer {token}"}

            async def worker(n: int) -> None:
                i = 0
                while not stop.is_set():
                    url = balancer.pick()
                    try:
                        r = await client.post(
                            f"{url}/api/tasks", json={"title": f"rolling {n}-{i}"}, headers=auth
                        )
                    except httpx.HTTPError as exc:
                        failures.append(f"{url}: {type(exc).__name__}")
                    else:
                        if r.status_code == 201:
                            created.append(r.json()["id"])
                        else:
                            failures.append(f"{url}: HTTP {r.status_code} {r.text[:200]}")
                    i += 1

            poller = asyncio.create_task(balancer.poll(client, stop))
            workers = [asyncio.create_task(worker(n)) for n in range(WORKERS)]
            await asyncio.sleep(2)  # steady load on both replicas
            before = len(created)
            await asyncio.to_thread(platform.restart_app, "backend")  # SIGTERM, exit, start, ready
            await asyncio.sleep(2)  # and on the new process
            stop.set()
            await asyncio.gather(poller, *workers)
        assert before > 0 and len(created) > before
        assert not failures, f"{len(failures)} requests failed during the restart: {failures[:5]}"
        assert first_url in balancer.saw_not_ready, "the stopping replica's /readyz never failed"
        with psycopg.connect(platform.dsn, autocommit=True) as conn:

            def all_published() -> bool:
                rows = conn.execute(
                    "SELECT partition_key, sent_at IS NOT NULL FROM backend.outbox"
                    " WHERE event_type = 'com.todo.task.created' AND partition_key = ANY(%s)",
                    (created,),
                ).fetchall()
                unsent = {key for key, sent in rows if not sent} | (set(created) - {key for key, _ in rows})
                assert not unsent, f"{len(unsent)} of {len(created)} created tasks' events not published"
                return True

            eventually(all_published, "the created tasks' events published", within=120, interval=1)
    finally:
        platform.extra_env.pop("backend", None)
        if second is not None:
            platform.stop(second)
            platform.urls.pop(second, None)
        platform.restart_app("backend")
