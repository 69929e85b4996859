"""The HTTP metrics middleware: in-flight gauge, latency histogram and request counter per route."""

from __future__ import annotations

import subprocess
import sys

import httpx
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from todo.common.metrics import HttpMetrics
from todo.common.middleware import RequestContextMiddleware


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_in_flight_counts_the_requests_being_handled_and_the_rest_is_recorded():
    seen: list[float] = []

    async def probe(_request):
        seen.append(_value("todo_http_requests_in_flight", route="/probe/{item}"))
        return JSONResponse({}, status_code=202)

    inner = Starlette(routes=[Route("/probe/{item}", probe, methods=["PUT"])])
    app = RequestContextMiddleware(inner, access_log=False, metrics=HttpMetrics(inner.router))
    labels = {"route": "/probe/{item}", "method": "PUT"}
    requests_before = _value("todo_http_requests_total", status="202", **labels)
    observed_before = _value("todo_http_request_duration_seconds_count", **labels)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for item in ("a", "b"):
            assert (await client.put(f"/probe/{item}")).status_code == 202
    assert seen == [1.0, 1.0]  # the request itself, while it is handled
    assert _value("todo_http_requests_in_flight", route="/probe/{item}") == 0.0
    assert _value("todo_http_requests_total", status="202", **labels) - requests_before == 2
    assert _value("todo_http_request_duration_seconds_count", **labels) - observed_before == 2


def test_labelled_counters_start_at_zero_before_their_first_event():
    # A fresh interpreter: in this one other tests may already have counted.
    probe = (
        "from prometheus_client import REGISTRY; import todo.common.metrics; "
        "print(REGISTRY.get_sample_value('todo_reminders_fired_total', {'timing': 'on_time'}), "
        "REGISTRY.get_sample_value('todo_reminders_fired_total', {'timing': 'late'}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert out.split() == ["0.0", "0.0"]


async def test_request_context_middleware_records_the_metrics_it_is_given():
    """The services record the HTTP metrics in the request-context layer (one clock, one status)."""
    seen: list[float] = []

    async def probe(_request):
        seen.append(_value("todo_http_requests_in_flight", route="/context/{item}"))
        return JSONResponse({}, status_code=409)

    inner = Starlette(routes=[Route("/context/{item}", probe, methods=["DELETE"])])
    app = RequestContextMiddleware(inner, metrics=HttpMetrics(inner.router))
    labels = {"route": "/context/{item}", "method": "DELETE"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for item in ("a", "b"):
            response = await client.delete(f"/context/{item}", headers={"X-Request-ID": f"rid-{item}"})
            assert response.status_code == 409 and response.headers["x-request-id"] == f"rid-{item}"
        assert (await client.request("BREW", "/context/c")).status_code == 405
    assert seen == [1.0, 1.0]
    assert _value("todo_http_requests_in_flight", route="/context/{item}") == 0.0
    assert _value("todo_http_requests_total", status="409", **labels) == 2
    assert _value("todo_http_request_duration_seconds_count", **labels) == 2
    assert _value("todo_http_request_duration_seconds_bucket", le="10.0", **labels) == 2
    other = {"route": "/context/{item}", "method": "other", "status": "405"}
    assert _value("todo_http_requests_total", **other) == 1  # any method token: one bounded label


def test_the_http_series_expose_what_prometheus_clients_own_histogram_and_counter_would():
    """RouteSeries counts in plain numbers; the exposition must match the library's own metrics fed
    the same observations (bucket bounds inclusive, cumulative counts, sum, per-status counters)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from todo.common.metrics import _LATENCY_BUCKETS, HttpSeries

    ours = HttpSeries()
    reference = CollectorRegistry()
    requests = Counter(
        "todo_http_requests", "HTTP requests handled", ["route", "method", "status"], registry=reference
    )
    duration = Histogram(
        "todo_http_request_duration_seconds",
        "HTTP request latency",
        ["route", "method"],
        buckets=_LATENCY_BUCKETS,
        registry=reference,
    )
    observations = [(200, 0.005), (200, 0.0051), (404, 0.1), (200, 10.0), (500, 42.0), (200, 0.0)]
    series = ours.get("/api/tasks/{task_id}", "GET")
    for status, seconds in observations:
        series.started()
        series.finished(status, seconds)
        requests.labels("/api/tasks/{task_id}", "GET", str(status)).inc()
        duration.labels("/api/tasks/{task_id}", "GET").observe(seconds)
    ours.get("/api/tasks/{task_id}", "DELETE").started()  # in flight, summed per route

    def samples(collector) -> set[tuple[str, tuple, float]]:  # noqa: ANN001 - any collector
        return {
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for family in collector.collect()
            for s in family.samples
            if not s.name.endswith("_created")
        }

    exposed = samples(ours)
    get = {s for s in exposed if ("method", "GET") in s[1]}
    assert get == samples(reference)
    in_flight = {s for s in exposed if s[0] == "todo_http_requests_in_flight"}
    assert in_flight == {("todo_http_requests_in_flight", (("route", "/api/tasks/{task_id}"),), 1)}
