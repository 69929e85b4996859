"""One JSON object per line on stdout for everything: structlog loggers, stdlib loggers, uvicorn.

Fields (docs/contracts.md): ``timestamp`` (RFC 3339 UTC), ``level``, ``service``, ``message``,
``logger`` and, from the context variables bound per request/event, ``request_id``, ``trace_id``,
``user_id``, ``task_id``, ``event_id``, ``event_type``; callers add ``duration_ms`` and ``error``.
Secrets are redacted before rendering.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

from todo.common.redaction import redact_event_dict

_service_name = "todo"


def _add_service(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    event_dict.setdefault("service", _service_name)
    return event_dict


def _event_to_message(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    if "event" in event_dict:
        event_dict["message"] = str(event_dict.pop("event"))
    return event_dict


def _exception_to_error(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    # format_exc_info puts the traceback into "exception"; the contract field is "error".
    exc = event_dict.pop("exception", None)
    if exc is not None:
        if "error" in event_dict:
            event_dict["traceback"] = exc
        else:
            event_dict["error"] = exc
    error = event_dict.get("error")
    if isinstance(error, BaseException):
        event_dict["error"] = f"{type(error).__name__}: {error}"
    return event_dict


def _level_name(_logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    level = event_dict.get("level") or method
    event_dict["level"] = "warning" if level == "warn" else ("critical" if level == "fatal" else level)
    return event_dict


_FIRST = ("timestamp", "level", "service", "logger", "message")


def _render_json(_logger: Any, _method: str, event_dict: dict[str, Any]) -> str:
    ordered = {k: event_dict.pop(k) for k in _FIRST if k in event_dict}
    ordered.update(event_dict)
    return orjson.dumps(ordered, default=str).decode()


def _add_logger_name(logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    # structlog lines: the JSONLineLogger below; stdlib records: a _Named built by the formatter
    event_dict.setdefault("logger", logger.name)
    return event_dict


def shared_processors() -> list[Any]:
    """The chain every line goes through, structlog and stdlib alike (before rendering)."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _level_name,
        _add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _add_service,
        structlog.processors.format_exc_info,
        _exception_to_error,
        _event_to_message,
        redact_event_dict,
    ]


#: The handler every line is written through; configure_logging replaces it.
_handler: logging.Handler = logging.StreamHandler(sys.stdout)
_min_level = logging.INFO
_LEVELS = logging.getLevelNamesMapping()


def _drop_below_level(_logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    # A processor rather than structlog's level-filtering logger classes: loggers are cached on
    # first use, and configure_logging may run again with another level (the tests do).
    if _LEVELS.get(method.upper(), logging.ERROR) < _min_level:
        raise structlog.DropEvent
    return event_dict


class JSONLineLogger:
    """The end of structlog's chain: writes the rendered line through the root handler (its stream
    and lock), where stdlib records (uvicorn, SQLAlchemy) go too, so lines never interleave.

    structlog lines skip the stdlib machinery (LogRecord, caller lookup, handler dispatch): about
    half the CPU of an access-log line (docs/performance.md)."""

    def __init__(self, name: str = "todo") -> None:
        self.name = name

    def msg(self, line: str) -> None:
        handler = _handler
        handler.acquire()
        try:
            stream = handler.stream  # type: ignore[attr-defined]
            stream.write(line + "\n")
            stream.flush()
        finally:
            handler.release()

    debug = info = warning = warn = error = critical = fatal = exception = log = msg


class _Named:
    """What the chain's processors see as the logger of a stdlib record."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class JSONLineFormatter(logging.Formatter):
    """Formats stdlib records (uvicorn, SQLAlchemy, asyncio) into the same JSON line."""

    def __init__(self) -> None:
        super().__init__()
        self._chain = shared_processors()

    def format(self, record: logging.LogRecord) -> str:
        event_dict: dict[str, Any] = {"event": record.getMessage()}
        if record.exc_info:
            event_dict["exc_info"] = record.exc_info
        logger = _Named(record.name)
        method = record.levelname.lower()
        for proc in self._chain:
            event_dict = proc(logger, method, event_dict)
        return _render_json(logger, method, event_dict)


def configure_logging(service: str, level: str = "INFO", stream: Any = None) -> None:
    """Route structlog and stdlib logging (uvicorn included) through one JSON renderer on stdout."""
    global _service_name, _handler, _min_level
    _service_name = service
    numeric = _LEVELS.get(level.upper(), logging.INFO)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JSONLineFormatter())
    _handler, _min_level = handler, numeric
    structlog.configure(
        processors=[_drop_below_level, *shared_processors(), _render_json],
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
