"""Request context middleware: X-Request-ID and traceparent into the log context, one access log line."""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from todo.common.auth import token_matches
from todo.common.context import bind_request, clean_request_id, trace_from_traceparent
from todo.common.errors import problem_response
from todo.common.logging import write_access_line
from todo.common.metrics import HttpMetrics

_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestContextMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it costs throughput and breaks contextvars).

    Binds the request id and trace context, answers with X-Request-ID, writes one access line and,
    given ``metrics``, records the request's HTTP metrics: one layer times each request and sees its
    status for both (a second middleware layer cost a closure, a wrapped send and a clock of its own)."""

    def __init__(self, app: ASGIApp, access_log: bool = True, metrics: HttpMetrics | None = None) -> None:
        self.app = app
        self.access_log = access_log
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                _bind_request_of(scope)
            await self.app(scope, receive, send)
            return
        request_id_header = (b"x-request-id", _bind_request_of(scope).encode())
        series = None if self.metrics is None else self.metrics.series(scope)
        if series is not None:
            series.started()
        status = 500
        start = time.perf_counter_ns()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # a new list: the response's own header list may be reused by its sender
                message["headers"] = [*message.get("headers", ()), request_id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed_ns = time.perf_counter_ns() - start
            if series is not None:
                series.finished(status, elapsed_ns / 1e9)
            path = scope.get("path", "")
            if self.access_log and (path not in _QUIET_PATHS or status >= 400):
                write_access_line(
                    scope.get("method", ""),
                    path,
                    status,
                    (elapsed_ns + 5_000) // 10_000 / 100,  # 10 µs
                )


def _bind_request_of(scope: Scope) -> str:
    """Bind the caller's X-Request-ID (or a fresh one) and trace context; returns the request id."""
    request_id = trace_header = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            request_id = value.decode("latin-1")
        elif name == b"traceparent":
            trace_header = value.decode("latin-1")
    request_id = clean_request_id(request_id)
    bind_request(request_id, trace_from_traceparent(trace_header))
    return request_id


class BodySizeLimitMiddleware:
    """Refuses a request body over ``max_bytes`` with 413 problem+json, before the app reads it.

    A request that carries the app token (a delivery from the Dapr sidecar: a bulk delivery holds up
    to 100 events) may send up to ``trusted_max_bytes``.

    A declared Content-Length over the limit is refused at once; a chunked body is counted as it is
    read and refused when it passes the limit (the server already stops a body at its declared
    Content-Length, so a body with one that fits needs no counting)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, trusted_max_bytes: int = 0, app_token: str | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.trusted_max_bytes = max(trusted_max_bytes, max_bytes)
        self.app_token = app_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = presented_token = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"dapr-api-token":
                presented_token = value.decode("latin-1")
        limit = self.max_bytes
        if presented_token is not None and token_matches(presented_token, self.app_token):
            limit = self.trusted_max_bytes
        if declared is not None:
            if not declared.isdigit() or int(declared) > limit:
                await self._refuse(scope, receive, send, limit)
                return
            await self.app(scope, receive, send)
            return
        await self.app(scope, self._counting(receive, limit), send)

    def _counting(self, receive: Receive, limit: int) -> Receive:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the route's body read: FastAPI lets an HTTPException through and
                    # the problem+json handler answers it.
                    raise HTTPException(413, _too_large(limit))
            return message

        return counted

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(None, 413, "payload-too-large", _too_large(limit), instance=scope["path"])
        # The unread body is left behind: the connection is closed so it is never parsed as a request.
        response.headers["connection"] = "close"
        await response(scope, receive, send)


def _too_large(limit: int) -> str:
    return f"The request body is larger than {limit} bytes."
