"""Every Prometheus metric of docs/contracts.md, defined once for all services, and the HTTP series.

No label ever holds a user, task, event or request id. ``route`` is the route template.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_EVENT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

HTTP_REQUESTS = Counter("todo_http_requests_total", "HTTP requests handled", ["route", "method", "status"])
HTTP_DURATION = Histogram(
    "todo_http_request_duration_seconds",
    "HTTP request latency",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("todo_http_requests_in_flight", "HTTP requests being handled", ["route"])

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

#: Requests in flight per route template, for every app of the process. HTTP_IN_FLIGHT reads them
#: when scraped: a plain count per request instead of two locked gauge updates (the event loop
#: is the only writer).
_in_flight: dict[str, list[int]] = {}


def _in_flight_count(route: str) -> list[int]:
    count = _in_flight.get(route)
    if count is None:
        count = _in_flight[route] = [0]
        HTTP_IN_FLIGHT.labels(route).set_function(lambda: count[0])
    return count


class RouteSeries:
    """The labelled series of one route template and method, looked up once: prometheus_client's
    labels() takes a lock and builds a key on every call."""

    __slots__ = ("duration", "in_flight", "method", "requests", "route")

    def __init__(self, route: str, method: str) -> None:
        self.route, self.method = route, method
        self.in_flight = _in_flight_count(route)
        self.duration = HTTP_DURATION.labels(route, method)
        self.requests: dict[int, Any] = {}  # status -> counter child

    def started(self) -> None:
        self.in_flight[0] += 1

    def finished(self, status: int, seconds: float) -> None:
        self.in_flight[0] -= 1
        self.duration.observe(seconds)
        requests = self.requests.get(status)
        if requests is None:
            requests = self.requests[status] = HTTP_REQUESTS.labels(self.route, self.method, str(status))
        requests.inc()


class HttpMetrics:
    """Requests total, latency histogram and in-flight gauge per route template and method.

    Recorded by RequestContextMiddleware when it is given one: one layer times the request and sees
    its status for the access line and the metrics alike (``access_log=False`` for metrics alone)."""

    #: (method, path) -> series; paths with ids make most entries, so the map is bounded.
    _PATH_CACHE_SIZE = 2048

    def __init__(self, router_app: Any = None) -> None:
        self.router_app = router_app
        self._by_path: dict[tuple[str, str], RouteSeries] = {}
        self._by_route: dict[tuple[str, str], RouteSeries] = {}  # (template, method label) -> series

    def series(self, scope: Scope) -> RouteSeries:
        key = (scope["method"], scope["path"])
        series = self._by_path.get(key)
        if series is None:
            route = route_template(self.router_app or scope.get("app"), scope)
            method = key[0] if key[0] in _METHODS else "other"  # any token is a valid HTTP method
            series = self._by_route.get((route, method))
            if series is None:
                series = self._by_route[(route, method)] = RouteSeries(route, method)
            if len(self._by_path) >= self._PATH_CACHE_SIZE:
                self._by_path.clear()
            self._by_path[key] = series
        return series


async def metrics_endpoint(_request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
