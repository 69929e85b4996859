"""Every Prometheus metric of docs/contracts.md, defined once for all services, and the HTTP series.

No label ever holds a user, task, event or request id. ``route`` is the route template.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

# The HTTP series (todo_http_requests_total, todo_http_request_duration_seconds,
# todo_http_requests_in_flight) are counted per request by RouteSeries and exposed by HttpSeries below.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BUCKET_LABELS = (*map(str, _LATENCY_BUCKETS), "+Inf")  # as prometheus_client writes them: "1.0", "0.005"
_EVENT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

EVENTS_PUBLISHED = Counter("todo_events_published_total", "Events published to pub/sub", ["topic", "type"])
EVENTS_PUBLISH_FAILED = Counter(
    "todo_events_publish_failed_total", "Failed publish attempts (the event is retried)", ["topic", "type"]
)
OUTBOX_BACKLOG = Gauge("todo_outbox_backlog", "Outbox events not yet published")
OUTBOX_OLDEST_AGE = Gauge("todo_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox event")

EVENTS_CONSUMED = Counter(
    "todo_events_consumed_total", "Events received from pub/sub by outcome", ["topic", "type", "outcome"]
)
EVENT_PROCESSING = Histogram(
    "todo_event_processing_seconds", "Time to handle one event", ["topic", "type"], buckets=_EVENT_BUCKETS
)
EVENT_END_TO_END = Histogram(
    "todo_event_end_to_end_seconds",
    "From the event's time to the end of its handling",
    ["topic", "type"],
    buckets=_EVENT_BUCKETS,
)
EVENTS_DEAD_LETTERED = Counter(
    "todo_events_dead_lettered_total", "Events sent to <topic>-dlq", ["topic", "type"]
)

REMINDERS_SCHEDULED = Counter("todo_reminders_scheduled_total", "Reminders scheduled")
REMINDERS_CANCELLED = Counter("todo_reminders_cancelled_total", "Reminders cancelled")
REMINDERS_FIRED = Counter("todo_reminders_fired_total", "Reminders fired", ["timing"])
# Both series exist from the start at 0: rate() over a counter whose first sample is already 1 shows
# nothing, so the dashboard's first firings would be invisible.
for _timing in ("on_time", "late"):
    REMINDERS_FIRED.labels(_timing)
REMINDER_FIRE_DELAY = Histogram(
    "todo_reminder_fire_delay_seconds",
    "Delay between a reminder's due time and its firing",
    buckets=_EVENT_BUCKETS,
)
REMINDERS_PENDING = Gauge("todo_reminders_pending", "Reminders scheduled and not yet fired")

WEBSOCKET_CONNECTIONS = Gauge("todo_websocket_connections", "Open WebSocket connections")
WEBSOCKET_MESSAGES_SENT = Counter("todo_websocket_messages_sent_total", "WebSocket messages sent", ["type"])
WEBSOCKET_DELIVERY = Histogram(
    "todo_websocket_delivery_seconds", "From the event's time to the WebSocket send", buckets=_EVENT_BUCKETS
)
WEBSOCKET_DISCONNECTS = Counter("todo_websocket_disconnects_total", "WebSocket disconnects", ["reason"])

AUDIT_WRITES = Counter("todo_audit_writes_total", "Audit records written", ["type"])

AUTH_REFUSED = Counter(
    "todo_auth_refused_total", "Register/login attempts refused before hashing a password", ["reason"]
)
for _reason in ("client", "account", "busy"):
    AUTH_REFUSED.labels(_reason)

UNMATCHED_ROUTE = "unmatched"


def _leaf_match(route: Any, scope: Scope) -> tuple[Match, str]:
    """Match one route; routers included by FastAPI are searched for the template of the leaf route."""
    if hasattr(route, "path"):
        match, _ = route.matches(scope)
        return match, route.path
    contexts = getattr(route, "effective_route_contexts", None)
    if contexts is None:
        return Match.NONE, UNMATCHED_ROUTE
    path = scope["path"]
    partial: str | None = None
    for ctx in contexts():
        regex = getattr(ctx, "path_regex", None)
        if regex is None or not regex.match(path):
            continue
        methods = getattr(ctx, "methods", None)
        template = getattr(ctx, "path_format", UNMATCHED_ROUTE)
        if not methods or scope["method"] in methods:
            return Match.FULL, template
        partial = partial or template
    return (Match.PARTIAL, partial) if partial else (Match.NONE, UNMATCHED_ROUTE)


def route_template(app: Any, scope: Scope) -> str:
    """The path template of the route that will handle ``scope`` (never the raw path)."""
    partial: str | None = None
    for route in getattr(app, "routes", ()):
        match, template = _leaf_match(route, scope)
        if match is Match.FULL:
            return template
        if match is Match.PARTIAL and partial is None:
            partial = template  # path matches, method does not (405)
    return partial or UNMATCHED_ROUTE


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RouteSeries:
    """The HTTP series of one route template and method, kept as plain numbers.

    prometheus_client's Counter and Histogram take a lock and walk several calls per update; the
    event loop is the only writer here, so each request adds to a few numbers and HttpSeries turns
    them into the usual families when scraped (docs/performance.md)."""

    __slots__ = ("buckets", "in_flight", "method", "requests", "route", "seconds")

    def __init__(self, route: str, method: str) -> None:
        self.route, self.method = route, method
        self.in_flight = 0
        self.buckets = [0] * (len(_LATENCY_BUCKETS) + 1)  # per bucket (not cumulative), +Inf last
        self.seconds = 0.0
        self.requests: dict[int, int] = {}  # status -> count

    def started(self) -> None:
        self.in_flight += 1

    def finished(self, status: int, seconds: float) -> None:
        self.in_flight -= 1
        self.seconds += seconds
        self.buckets[bisect_left(_LATENCY_BUCKETS, seconds)] += 1  # le is inclusive
        requests = self.requests
        requests[status] = requests.get(status, 0) + 1


class HttpSeries:
    """A prometheus_client collector: requests total, latency histogram and in-flight gauge of every
    RouteSeries of the process (one per route template and method)."""

    def __init__(self) -> None:
        self.by_route: dict[tuple[str, str], RouteSeries] = {}

    def get(self, route: str, method: str) -> RouteSeries:
        series = self.by_route.get((route, method))
        if series is None:
            series = self.by_route[(route, method)] = RouteSeries(route, method)
        return series

    def collect(self) -> list[Metric]:
        """Also what the registry reads for the names at registration (no ``describe``): then empty."""
        requests = CounterMetricFamily(
            "todo_http_requests", "HTTP requests handled", labels=["route", "method", "status"]
        )
        duration = HistogramMetricFamily(
            "todo_http_request_duration_seconds", "HTTP request latency", labels=["route", "method"]
        )
        in_flight = GaugeMetricFamily(
            "todo_http_requests_in_flight", "HTTP requests being handled", labels=["route"]
        )
        in_flight_by_route: dict[str, int] = {}
        for series in list(self.by_route.values()):
            for status, count in list(series.requests.items()):
                requests.add_metric([series.route, series.method, str(status)], count)
            cumulative = list(accumulate(series.buckets))
            duration.add_metric(
                [series.route, series.method],
                list(zip(_BUCKET_LABELS, cumulative, strict=True)),
                series.seconds,
            )
            in_flight_by_route[series.route] = in_flight_by_route.get(series.route, 0) + series.in_flight
        for route, count in in_flight_by_route.items():
            in_flight.add_metric([route], count)
        return [requests, duration, in_flight]


HTTP_SERIES = HttpSeries()
REGISTRY.register(HTTP_SERIES)


class HttpMetrics:
    """Requests total, latency histogram and in-flight gauge per route template and method.

    Recorded by RequestContextMiddleware when it is given one: one layer times the request and sees
    its status for the access line and the metrics alike (``access_log=False`` for metrics alone)."""

    #: (method, path) -> series; paths with ids make most entries, so the map is bounded.
    _PATH_CACHE_SIZE = 2048

    def __init__(self, router_app: Any = None) -> None:
        self.router_app = router_app
        self._by_path: dict[tuple[str, str], RouteSeries] = {}

    def series(self, scope: Scope) -> RouteSeries:
        key = (scope["method"], scope["path"])
        series = self._by_path.get(key)
        if series is None:
            route = route_template(self.router_app or scope.get("app"), scope)
            method = key[0] if key[0] in _METHODS else "other"  # any token is a valid HTTP method
            series = HTTP_SERIES.get(route, method)
            if len(self._by_path) >= self._PATH_CACHE_SIZE:
                self._by_path.clear()
            self._by_path[key] = series
        return series


async def metrics_endpoint(_request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
