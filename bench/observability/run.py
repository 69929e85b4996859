"""Observability cost of one service: logging throughput and per-request instrumentation.

Measures CPU time (time.process_time, one core) inside this process, and prints ratios against
baselines measured in the same run:
  logging   lines per CPU-second of the services' shared logging (todo.common.logging: a structlog
            logger, one renderer with context fields and redaction, orjson) against the floor
            of writing the same dict with orjson, and against plain stdlib logging;
            compared with the target of 10,000 lines per minute.
  requests  CPU per request of a route through RequestContextMiddleware (with the HTTP metrics and
            without, with its access line and without) against the bare Starlette router, driven
            as direct ASGI calls (no sockets, so the middleware's share is not diluted by the
            network).
  scrape    CPU of one /metrics exposition with the series a busy service has.

Usage (from the repo root, ~30 s): .venv/bin/python bench/observability/run.py [--lines 40000]
Not part of the test suite; absolute numbers depend on the machine, the ratios are the result.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "services" / "src"))

TARGET_LINES_PER_MINUTE = 10_000


def cpu_rate(fn: Callable[[], None], n: int) -> float:
    """Operations per CPU-second of fn (best of 3 runs)."""
    best = 0.0
    for _ in range(3):
        start = time.process_time()
        for _ in range(n):
            fn()
        elapsed = time.process_time() - start
        best = max(best, n / elapsed if elapsed > 0 else float("inf"))
    return best


def bench_logging(n: int) -> dict[str, float]:
    from todo.common.context import bind_request, trace_from_traceparent
    from todo.common.logging import configure_logging, get_logger

    sink = open(os.devnull, "w")  # noqa: SIM115 - kept open for the whole benchmark
    event = {
        "timestamp": "2026-11-29T01:02:03.456789Z",
        "level": "info",
        "service": "backend",
        "logger": "todo.access",
        "message": "request",
        "request_id": uuid.uuid4().hex,
        "method": "POST",
        "path": "/api/tasks",
        "status": 201,
        "duration_ms": 3.21,
    }

    def floor() -> None:
        sink.write(orjson.dumps(event).decode() + "\n")

    plain = logging.getLogger("bench.plain")
    plain.propagate = False
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    plain.addHandler(handler)
    plain.setLevel(logging.INFO)

    def stdlib() -> None:
        plain.info("request POST /api/tasks 201 %.2f", 3.21)

    configure_logging("backend", "INFO", stream=sink)
    bind_request(uuid.uuid4().hex, trace_from_traceparent(None))
    log = get_logger("todo.access")

    def ours() -> None:
        log.info("request", method="POST", path="/api/tasks", status=201, duration_ms=3.21)

    def ours_redacting() -> None:
        log.warning("login failed", password="hunter2-not-real", error="postgresql://u:p@db/todo refused")

    return {
        "floor (orjson line)": cpu_rate(floor, n),
        "stdlib logging (text)": cpu_rate(stdlib, n),
        "todo.common.logging": cpu_rate(ours, n),
        "todo.common.logging, redacting": cpu_rate(ours_redacting, n),
    }


def bench_requests(n: int) -> dict[str, float]:
    from starlette.responses import Response
    from starlette.routing import Route, Router
    from todo.common.metrics import HttpMetrics
    from todo.common.middleware import RequestContextMiddleware

    async def endpoint(_request):  # noqa: ANN001, ANN202 - Starlette endpoint
        return Response(b"{}", media_type="application/json")

    router = Router(routes=[Route("/api/tasks/{task_id}", endpoint, methods=["GET"])])
    apps = {
        "bare router": router,
        "+ request context and metrics, no access line": RequestContextMiddleware(
            router, access_log=False, metrics=HttpMetrics(router)
        ),
        "+ request context and access log": RequestContextMiddleware(router),
        "+ both (as the services run)": RequestContextMiddleware(router, metrics=HttpMetrics(router)),
    }
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/api/tasks/{uuid.uuid4()}",
        "raw_path": b"",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"x-request-id", uuid.uuid4().hex.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: dict) -> None:
        return None

    async def run(app, count: int) -> float:  # noqa: ANN001 - any ASGI app
        best = 0.0
        for _ in range(3):
            start = time.process_time()
            for _ in range(count):
                await app(dict(scope), receive, send)
            best = max(best, count / (time.process_time() - start))
        return best

    loop = asyncio.new_event_loop()
    try:
        return {name: loop.run_until_complete(run(app, n)) for name, app in apps.items()}
    finally:
        loop.close()


def bench_scrape() -> tuple[float, int]:
    from prometheus_client import REGISTRY, generate_latest
    from todo.common import metrics as m

    for route in ("/api/tasks", "/api/tasks/{task_id}", "/api/tasks/{task_id}/complete", "/api/auth/login"):
        for method in ("GET", "POST", "PATCH", "DELETE"):
            series = m.HTTP_SERIES.get(route, method)
            for status in (200, 201, 204, 401, 404, 422):
                series.started()
                series.finished(status, 0.01)
    for kind in ("created", "updated", "completed", "deleted"):
        m.EVENTS_PUBLISHED.labels("task-events", f"com.todo.task.{kind}").inc()
        m.EVENT_PROCESSING.labels("task-events", f"com.todo.task.{kind}").observe(0.01)
    body = generate_latest(REGISTRY)
    rate = cpu_rate(lambda: generate_latest(REGISTRY), 50)
    return 1000.0 / rate, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=40_000, help="log lines per measurement")
    parser.add_argument("--requests", type=int, default=20_000, help="ASGI calls per measurement")
    args = parser.parse_args()

    logs = bench_logging(args.lines)
    floor = logs["floor (orjson line)"]
    print(f"Logging, lines per CPU-second (one core), {args.lines} lines, best of 3")
    for name, rate in logs.items():
        print(f"  {name:34s} {rate:12,.0f}/s   {rate / floor:6.2f}x floor")
    ours = logs["todo.common.logging"]
    target = TARGET_LINES_PER_MINUTE / 60
    print(
        f"  target {TARGET_LINES_PER_MINUTE:,} lines/min = {target:.0f}/s: one core logs "
        f"{ours / target:,.0f}x the target; at the target logging takes {100 * target / ours:.2f} % of a core"
    )

    reqs = bench_requests(args.requests)
    bare = reqs["bare router"]
    print(f"\nRequests through the middleware, CPU per request (direct ASGI calls, {args.requests} each)")
    for name, rate in reqs.items():
        extra = 1e6 / rate - 1e6 / bare
        print(f"  {name:34s} {1e6 / rate:8.1f} us   {bare / rate:5.2f}x bare   (+{extra:6.1f} us)")

    ms, size = bench_scrape()
    share = ms / 150  # one exposition every 15 s, as a percentage of one core
    print(f"\nOne /metrics exposition: {ms:.2f} ms CPU, {size:,} bytes; every 15 s = {share:.3f} % of a core")


if __name__ == "__main__":
    main()
