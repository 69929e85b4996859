"""Request context middleware: X-Request-ID and traceparent into the log context, one access log line."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from todo.common.context import bind_request, clean_request_id, trace_from_traceparent
from todo.common.logging import access_line

_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestContextMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it costs throughput and breaks contextvars)."""

    def __init__(self, app: ASGIApp, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = trace_header = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"traceparent":
                trace_header = value.decode("latin-1")
        request_id = clean_request_id(request_id)
        bind_request(request_id, trace_from_traceparent(trace_header))
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # a new list: the response's own header list may be reused by its sender
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = scope.get("path", "")
            if self.access_log and scope["type"] == "http" and (path not in _QUIET_PATHS or status >= 400):
                access_line(
                    scope.get("method", ""),
                    path,
                    status,
                    round((time.perf_counter() - start) * 1000, 2),
                )
