"""One JSON object per line on stdout for everything: structlog loggers, stdlib loggers, uvicorn.

Fields (docs/contracts.md): ``timestamp`` (RFC 3339 UTC), ``level``, ``service``, ``message``,
``logger`` and, from the context variables bound per request/event, ``request_id``, ``trace_id``,
``user_id``, ``task_id``, ``event_id``, ``event_type``; callers add ``duration_ms`` and ``error``.
Secrets are redacted before rendering.

Every line, structlog's or a stdlib record's, is built by one function (``render_line``) rather than
a chain of structlog processors: a chain of ten small processors and the stdlib LogRecord path cost
about three times as much CPU per line, and the access log writes a line per request
(docs/performance.md, "Observability cost").
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson
import structlog

from todo.common.context import log_fields
from todo.common.redaction import redact_field, redact_text

_service_name = "todo"
_min_level = logging.INFO
_LEVELS = logging.getLevelNamesMapping()
#: method names of structlog's loggers -> the contract's level names
_LEVEL_NAMES = {"warn": "warning", "fatal": "critical", "exception": "error", "msg": "info"}


_second_text: tuple[int, str] = (-1, "")


def _timestamp() -> str:
    """RFC 3339 UTC with microseconds and "Z". The text up to the second is formatted once per second
    (building a datetime per line was a tenth of a line's cost)."""
    global _second_text
    now = time.time()
    second = int(now)
    if second != _second_text[0]:
        _second_text = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second_text[1]}.{int((now - second) * 1_000_000):06d}Z"


def _error_fields(event_dict: dict[str, Any]) -> None:
    """exc_info=... becomes the formatted traceback in ``error`` (``traceback`` when the caller set
    ``error`` too); an exception given as ``error`` becomes ``Type: message``."""
    if event_dict.get("exc_info"):
        formatted = structlog.processors.format_exc_info(None, "error", event_dict).pop("exception", None)
        if formatted is not None:
            event_dict["traceback" if "error" in event_dict else "error"] = formatted
    event_dict.pop("exc_info", None)
    error = event_dict.get("error")
    if isinstance(error, BaseException):
        event_dict["error"] = f"{type(error).__name__}: {error}"


def render_line(logger_name: str, method: str, event_dict: dict[str, Any]) -> str:
    """The JSON line of one log call: contract fields first, then the call's fields, then the
    bound context (request_id, trace_id, user_id, ...) unless the call set the same key; the
    message and every field redacted (the context when it was bound)."""
    if "exc_info" in event_dict or "error" in event_dict:
        _error_fields(event_dict)
    line: dict[str, Any] = {
        "timestamp": _timestamp(),
        "level": _LEVEL_NAMES.get(method, method),
        "service": event_dict.pop("service", _service_name),
        "logger": event_dict.pop("logger", logger_name),
        "message": redact_text(str(event_dict.pop("event", ""))),
    }
    event_dict.pop("timestamp", None)
    event_dict.pop("level", None)
    event_dict.pop("message", None)
    for key, value in event_dict.items():
        line[key] = redact_field(key, value)
    return _with_context_as_json(line)


def _with_context_as_json(line: dict[str, Any]) -> str:
    """The finished line: the bound context (request_id, trace_id, user_id, ...) appended unless the
    line has the same key, as JSON."""
    for key, value in log_fields().items():  # redacted when bound
        if key not in line:
            line[key] = value
    return orjson.dumps(line, default=str).decode()


def _enabled(method: str) -> bool:
    return _LEVELS.get(_LEVEL_NAMES.get(method, method).upper(), logging.ERROR) >= _min_level


def _structlog_line(logger: JSONLineLogger, method: str, event_dict: dict[str, Any]) -> str:
    # The level check is here rather than in structlog's level-filtering logger classes: loggers
    # are cached on first use, and configure_logging may run again with another level (tests do).
    if not _enabled(method):
        raise structlog.DropEvent
    return render_line(logger.name, method, event_dict)


def access_line(method: str, path: str, status: int, duration_ms: float) -> None:
    """The access log's line for one request: what ``get_logger("todo.access").info("request",
    method=..., path=..., status=..., duration_ms=...)`` writes, built directly. One line per
    request makes it the busiest log call; the generic path's per-field work and structlog's
    bound-logger machinery were most of its cost (docs/performance.md)."""
    if _min_level > logging.INFO:
        return
    line: dict[str, Any] = {
        "timestamp": _timestamp(),
        "level": "info",
        "service": _service_name,
        "logger": "todo.access",
        "message": "request",
        "method": redact_text(method),
        "path": redact_text(path),
        "status": status,
        "duration_ms": duration_ms,
    }
    _write(_with_context_as_json(line))


#: The handler every line is written through; configure_logging replaces it.
_handler: logging.Handler = logging.StreamHandler(sys.stdout)


def _write(line: str) -> None:
    handler = _handler
    handler.acquire()
    try:
        stream = handler.stream  # type: ignore[attr-defined]
        stream.write(line + "\n")
        stream.flush()
    finally:
        handler.release()


class JSONLineLogger:
    """The end of structlog's pipeline: writes the rendered line through the root handler (its
    stream and lock), where stdlib records (uvicorn, SQLAlchemy) go too, so lines never interleave.
    structlog lines skip the stdlib machinery (LogRecord, caller lookup, handler dispatch)."""

    def __init__(self, name: str = "todo") -> None:
        self.name = name

    def msg(self, line: str) -> None:
        _write(line)

    debug = info = warning = warn = error = critical = fatal = exception = log = msg


class JSONLineFormatter(logging.Formatter):
    """Formats stdlib records (uvicorn, SQLAlchemy, asyncio) into the same JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        event_dict: dict[str, Any] = {"event": record.getMessage()}
        if record.exc_info:
            event_dict["exc_info"] = record.exc_info
        return render_line(record.name, record.levelname.lower(), event_dict)


def configure_logging(service: str, level: str = "INFO", stream: Any = None) -> None:
    """Route structlog and stdlib logging (uvicorn included) through one JSON renderer on stdout."""
    global _service_name, _handler, _min_level
    _service_name = service
    numeric = _LEVELS.get(level.upper(), logging.INFO)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JSONLineFormatter())
    _handler, _min_level = handler, numeric
    structlog.configure(
        processors=[_structlog_line],
        logger_factory=JSONLineLogger,
        wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy", "alembic", "httpx"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # httpx logs every request (URL included) at INFO; the access log is written by our middleware.
    for name in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
