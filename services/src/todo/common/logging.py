"""One JSON object per line on stdout for everything: structlog loggers, stdlib loggers, uvicorn.

Fields (docs/contracts.md): ``timestamp`` (RFC 3339 UTC), ``level``, ``service``, ``message``,
``logger`` and, from the context variables bound per request/event, ``request_id``, ``trace_id``,
``user_id``, ``task_id``, ``event_id``, ``event_type``; callers add ``duration_ms`` and ``error``.
Secrets are redacted before rendering.

Every line goes through one structlog processor chain (``PROCESSORS``) ending in orjson bytes,
structlog's documented fast path (``JSONRenderer(serializer=orjson.dumps)`` with a
``BytesLogger``); stdlib records (uvicorn, SQLAlchemy) are run through the same chain by
``StdlibRecords`` and written by the same logger, under its one lock. The access line of every
HTTP request is assembled from the chain's own pieces by ``write_access_line`` (a test holds it to
the chain's bytes): the chain's generic path was half of that line's cost.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, BinaryIO

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


#: method name (structlog's or a stdlib record's lower-cased level name) -> its numeric level
_METHOD_LEVELS = {name.lower(): number for name, number in _LEVELS.items()} | {
    method: _LEVELS[level.upper()] for method, level in _LEVEL_NAMES.items()
}


def drop_below_level(_logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Here rather than in structlog's level-filtering logger classes: loggers are cached on first
    use, and configure_logging may run again with another level (tests do)."""
    if _METHOD_LEVELS.get(method, logging.ERROR) < _min_level:
        raise structlog.DropEvent
    return event_dict


def _line_head(level: str, logger_name: str, message: str, service: str | None = None) -> dict[str, Any]:
    """The contract's fields every line starts with, in their order (``message`` already redacted)."""
    return {
        "timestamp": _timestamp(),
        "level": level,
        "service": _service_name if service is None else service,
        "logger": logger_name,
        "message": message,
    }


def contract_fields(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """The contract's fields first, then the call's (their exceptions as ``error``), all redacted."""
    if "exc_info" in event_dict or "error" in event_dict:
        _error_fields(event_dict)
    line = _line_head(
        _LEVEL_NAMES.get(method, method),
        event_dict.pop("logger", getattr(logger, "name", None) or "todo"),
        redact_text(str(event_dict.pop("event", ""))),
        event_dict.pop("service", _service_name),
    )
    for key in ("timestamp", "level", "message"):
        event_dict.pop(key, None)
    for key, value in event_dict.items():
        line[key] = redact_field(key, value)
    return line


def bound_context(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """The context bound to the request or event (redacted when bound), unless the call set the key."""
    for key, value in log_fields().items():
        if key not in event_dict:
            event_dict[key] = value
    return event_dict


_RENDERER = structlog.processors.JSONRenderer(serializer=orjson.dumps, default=str)
PROCESSORS: list[Any] = [drop_below_level, contract_fields, bound_context, _RENDERER]


def render_line(logger: Any, method: str, event_dict: dict[str, Any]) -> bytes:
    """The chain run on one event (a stdlib record's); raises structlog.DropEvent below the level."""
    for processor in PROCESSORS:
        event_dict = processor(logger, method, event_dict)
    return event_dict  # type: ignore[return-value]  # the renderer's bytes


class _Output:
    """The stream every line goes to; configure_logging points it elsewhere. One object for the
    whole process, so the loggers structlog caches (and their lock) keep writing here."""

    def __init__(self) -> None:
        self.target(sys.stdout)

    def target(self, stream: Any) -> None:
        self.stream = stream  # held: a text wrapper collected would close the buffer written to
        binary: BinaryIO | None = getattr(stream, "buffer", None)
        if binary is not None:
            self._write, self._flush = binary.write, binary.flush
        else:  # a text stream (tests capture lines in a StringIO)
            self._write, self._flush = (lambda data: stream.write(data.decode())), stream.flush

    def write(self, data: bytes) -> None:
        self._write(data)

    def flush(self) -> None:
        self._flush()


_output = _Output()
_lines = structlog.BytesLogger(_output)  # type: ignore[arg-type]  # write/flush is all it needs


ACCESS_LOGGER = "todo.access"


def write_access_line(method: str, path: str, status: int, duration_ms: float) -> None:
    """The one line per HTTP request (RequestContextMiddleware): the bytes the chain would write for
    ``get_logger(ACCESS_LOGGER).info("request", method=…, path=…, status=…, duration_ms=…)``, built
    from the same pieces (head, redaction, bound context, renderer) without structlog's bound-logger
    call and the generic field loop. Counted per create in the running server (callgrind,
    docs/performance.md) the chain took 74k instructions for this line and this takes 40k: a
    quarter of the request context's cost, the one line every request writes."""
    if _min_level > logging.INFO:
        return
    line = _line_head("info", ACCESS_LOGGER, "request")
    line["method"] = redact_text(method)
    line["path"] = redact_text(path)
    line["status"] = status
    line["duration_ms"] = duration_ms
    rendered = _RENDERER(None, "info", bound_context(None, "info", line))
    _lines.msg(rendered)  # type: ignore[arg-type]  # orjson renders bytes


class StdlibRecords(logging.Handler):
    """Stdlib records (uvicorn, SQLAlchemy, asyncio) through the same chain and the same writer."""

    def emit(self, record: logging.LogRecord) -> None:
        event_dict: dict[str, Any] = {"event": record.getMessage()}
        if record.exc_info:
            event_dict["exc_info"] = record.exc_info
        try:
            _lines.msg(render_line(record, record.levelname.lower(), event_dict))
        except structlog.DropEvent:
            return
        except Exception:
            self.handleError(record)


def configure_logging(service: str, level: str = "INFO", stream: Any = None) -> None:
    """Route structlog and stdlib logging (uvicorn included) through one JSON chain on stdout."""
    global _service_name, _min_level
    _service_name = service
    numeric = _LEVELS.get(level.upper(), logging.INFO)
    _min_level = numeric
    _output.target(stream or sys.stdout)
    structlog.configure(
        processors=PROCESSORS,
        logger_factory=structlog.BytesLoggerFactory(_output),  # type: ignore[arg-type]
        wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers[:] = [StdlibRecords()]
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
