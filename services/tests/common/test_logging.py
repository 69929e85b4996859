"""One JSON object per line with the contract fields, for structlog and stdlib (uvicorn) loggers alike."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime

from todo.common.context import bind, bind_request, clear_log_context, trace_from_traceparent
from todo.common.logging import configure_logging, get_logger


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_structlog_and_uvicorn_lines_share_the_format_and_context():
    stream = io.StringIO()
    configure_logging("backend", "INFO", stream=stream)
    try:
        bind_request(
            "req-1", trace_from_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        )
        bind(user_id="u-1", task_id="t-1")
        get_logger("todo.test").info("task created", duration_ms=1.5, password="hunter2")
        logging.getLogger("uvicorn.error").warning("Started server, dsn=postgresql://a:secret@db/x")
        try:
            raise ValueError("boom")
        except ValueError:
            get_logger("todo.test").exception("failed")
        get_logger("todo.test").debug("not shown at INFO")
    finally:
        clear_log_context()
    first, second, third = _lines(stream)
    for line in (first, second, third):
        assert line["service"] == "backend"
        assert line["request_id"] == "req-1"
        assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
        assert (
            datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0
        )
        assert line["timestamp"].endswith("Z")
    assert first["message"] == "task created" and first["level"] == "info" and first["logger"] == "todo.test"
    assert first["user_id"] == "u-1" and first["task_id"] == "t-1" and first["duration_ms"] == 1.5
    assert first["password"] == "[REDACTED]"
    assert second["logger"] == "uvicorn.error" and second["level"] == "warning"
    assert "secret" not in second["message"]
    assert third["level"] == "error" and "ValueError: boom" in third["error"]
    assert "hunter2" not in stream.getvalue()


def test_bound_context_is_redacted_once_and_in_every_line():
    stream = io.StringIO()
    configure_logging("audit", "INFO", stream=stream)
    try:
        bind_request("password:hunter2", trace_from_traceparent(None))  # a caller's X-Request-ID
        bind(event_type="com.example.x?token=abc123", api_key="k-123")
        log = get_logger("todo.test")
        log.info("first")
        log.info("second", event_type="explicit")  # the call's own field wins over the context
    finally:
        clear_log_context()
    first, second = _lines(stream)
    for line in (first, second):
        assert line["request_id"] == "password:[REDACTED]" and line["api_key"] == "[REDACTED]"
    assert first["event_type"] == "com.example.x?token=[REDACTED]"
    assert second["event_type"] == "explicit"
    assert "hunter2" not in stream.getvalue() and "abc123" not in stream.getvalue()


async def _call(app, path: str) -> int:
    sent: dict = {}

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
            sent["headers"] = dict(message["headers"])

    scope = {"type": "http", "method": "GET", "path": path, "headers": [(b"x-request-id", b"rid-7")]}
    await app(scope, receive, send)
    assert sent["headers"][b"x-request-id"] == b"rid-7"
    return sent["status"]


async def test_access_log_line_per_request_and_its_level():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from todo.common.middleware import RequestContextMiddleware

    app = RequestContextMiddleware(Starlette(routes=[Route("/x", lambda _r: PlainTextResponse("ok"))]))
    stream = io.StringIO()
    configure_logging("sync", "INFO", stream=stream)
    try:
        assert await _call(app, "/x") == 200
        assert await _call(app, "/healthz") == 404  # a quiet path, but an error: logged
        configure_logging("sync", "WARNING", stream=stream)
        assert await _call(app, "/x") == 200  # below the level: no line
    finally:
        clear_log_context()
    first, second = _lines(stream)
    assert first["logger"] == "todo.access" and first["message"] == "request" and first["level"] == "info"
    assert (first["method"], first["path"], first["status"]) == ("GET", "/x", 200)
    assert first["request_id"] == "rid-7" and isinstance(first["duration_ms"], float)
    assert second["path"] == "/healthz" and second["status"] == 404


def test_timestamps_are_rfc3339_utc_with_microseconds_and_follow_the_clock(monkeypatch):
    from todo.common import logging as todo_logging

    # two calls in one second reuse the formatted second; the next second is formatted anew
    for now in (1_700_000_000.25, 1_700_000_000.999999, 1_700_000_001.000001):
        monkeypatch.setattr(todo_logging.time, "time", lambda now=now: now)
        stamp = todo_logging._timestamp()
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert stamp.endswith("Z") and len(stamp) == len("2023-11-14T22:13:20.250000Z")
        assert abs(parsed.timestamp() - now) < 1e-5, (stamp, now)


def test_structlog_and_stdlib_lines_share_one_writer_whatever_the_stream():
    """Loggers structlog cached before a reconfiguration write to the new stream, binary or text."""
    log = get_logger("todo.test.cached")
    first, second = io.StringIO(), io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    configure_logging("backend", "INFO", stream=first)
    log.info("one")
    configure_logging("backend", "INFO", stream=second)
    log.info("two")
    logging.getLogger("todo.test.stdlib").warning("three")
    second.flush()
    assert [line["message"] for line in _lines(first)] == ["one"]
    written = second.buffer.getvalue().decode().splitlines()
    assert [json.loads(line)["message"] for line in written] == ["two", "three"]


def test_the_access_line_is_the_line_the_chain_writes_for_the_same_request():
    """write_access_line skips structlog's bound-logger call: its bytes must stay the chain's, field
    for field and in order, redaction and bound context included."""
    from todo.common.logging import ACCESS_LOGGER, write_access_line

    stream = io.StringIO()
    configure_logging("backend", "INFO", stream=stream)
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    try:
        bind_request("req-9", trace_from_traceparent(None))
        bind(user_id="u-9", path="/bound")  # a bound key the call also sets: the call's value wins
        for method, path, status in (("GET", f"/reset/{jwt}", 200), ("POST", "/api/tasks", 422)):
            write_access_line(method, path, status, 1.25)
            get_logger(ACCESS_LOGGER).info(
                "request", method=method, path=path, status=status, duration_ms=1.25
            )
        configure_logging("backend", "WARNING", stream=stream)
        write_access_line("GET", "/x", 200, 1.0)  # below the level: no line
    finally:
        clear_log_context()
    lines = _lines(stream)
    assert len(lines) == 4
    for ours, chains in zip(lines[::2], lines[1::2], strict=True):
        ours.pop("timestamp"), chains.pop("timestamp")
        assert list(ours.items()) == list(chains.items())
    assert jwt not in stream.getvalue() and lines[0]["path"] == "/reset/[REDACTED]"
    assert lines[0]["logger"] == ACCESS_LOGGER and lines[2]["path"] == "/api/tasks"
    assert lines[0]["user_id"] == "u-9" and lines[0]["request_id"] == "req-9"
