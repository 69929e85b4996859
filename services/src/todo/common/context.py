"""Request id and W3C trace context: parsed from incoming requests/events, bound to the log context,
and passed on to outgoing Dapr calls."""

from __future__ import annotations

import random
import re
import uuid
from contextvars import ContextVar
from typing import Any, NamedTuple

from todo.common.redaction import redact_field, redact_text

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class TraceContext(NamedTuple):
    """Immutable; a named tuple rather than a frozen dataclass, whose set-by-set constructor cost
    about a microsecond per request (docs/performance.md)."""

    trace_id: str
    span_id: str  # our own span: the parent of every outgoing call made while handling this work
    flags: str = "01"

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


request_id_var: ContextVar[str | None] = ContextVar("todo_request_id", default=None)
trace_var: ContextVar[TraceContext | None] = ContextVar("todo_trace", default=None)
#: The fields every log line of the current request or event carries. One variable holding a dict
#: that is replaced, never changed in place, so a task started from here keeps its own copy.
_log_fields: ContextVar[dict[str, Any] | None] = ContextVar("todo_log_fields", default=None)
_NO_FIELDS: dict[str, Any] = {}


# Ids only need to be unique, not unguessable: like OpenTelemetry's default id generator, take them
# from the process's Mersenne Twister (seeded from the OS, and re-seeded in a forked child) rather
# than a system call per id, which cost a few per cent of a request (docs/performance.md).
_random_bits = random.getrandbits


def _id128() -> str:
    return f"{_random_bits(128) or 1:032x}"  # all zeros is not a valid W3C id


def _id64() -> str:
    return f"{_random_bits(64) or 1:016x}"


def new_request_id() -> str:
    return _id128()


def clean_request_id(value: str | None) -> str:
    """The caller's X-Request-ID if it is a sane token, else a fresh one (never log arbitrary input)."""
    if value and _REQUEST_ID.match(value):
        return value
    return new_request_id()


def trace_from_traceparent(value: str | None) -> TraceContext:
    """Continue the caller's trace (new span id of our own) or start a new one."""
    if value:
        m = _TRACEPARENT.match(value.strip().lower())
        if m and m.group(1) != "0" * 32 and m.group(2) != "0" * 16:
            return TraceContext(m.group(1), _id64(), m.group(3))
    return TraceContext(_id128(), _id64())


def bind_request(request_id: str, trace: TraceContext) -> None:
    """Start a fresh log context for one request or one consumed event."""
    request_id_var.set(request_id)
    trace_var.set(trace)
    # the request id may come from the caller; the trace id is hex
    _log_fields.set({"request_id": redact_text(request_id), "trace_id": trace.trace_id})


def bind(**values: object) -> None:
    """Add fields (user_id, task_id, event_id, event_type, ...) to the current log context.

    Values are redacted here, once, rather than in every log line that carries them."""
    fields = dict(_log_fields.get() or _NO_FIELDS)
    for key, value in values.items():
        fields[key] = str(value) if isinstance(value, uuid.UUID) else redact_field(key, value)
    _log_fields.set(fields)


def log_fields() -> dict[str, Any]:
    """The fields bound to the current log context, already redacted (do not change the dict)."""
    return _log_fields.get() or _NO_FIELDS


def clear_log_context() -> None:
    """Forget every bound field (and the request id and trace context)."""
    request_id_var.set(None)
    trace_var.set(None)
    _log_fields.set(None)


def outgoing_headers() -> dict[str, str]:
    """Headers that carry the current request id and trace context to a downstream call."""
    headers: dict[str, str] = {}
    rid = request_id_var.get()
    if rid:
        headers["X-Request-ID"] = rid
    trace = trace_var.get()
    if trace:
        headers["traceparent"] = trace.traceparent
    return headers


#: CloudEvents extension with the trace context of the request that caused the event.
ORIGIN_TRACEPARENT = "origintraceparent"


def event_extensions() -> dict[str, str]:
    """CloudEvents extensions that carry the current request id and trace context into an event."""
    ext: dict[str, str] = {}
    trace = trace_var.get()
    if trace is not None:
        # Dapr rewrites ``traceparent`` with a span of the publish call (on a bulk publish, one
        # call for many events); the copy keeps the trace of the change that caused the event.
        ext["traceparent"] = ext[ORIGIN_TRACEPARENT] = trace.traceparent
    rid = request_id_var.get()
    if rid:
        ext["requestid"] = rid
    return ext


def bind_event(event: Any) -> None:
    """Start the log context for handling an event (a dict or a parsed CloudEvent) from its
    ``requestid`` / ``origintraceparent`` extensions (else Dapr's ``traceparent``)."""
    get = event.get if isinstance(event, dict) else event.extensions.get
    rid = get("requestid")
    tp = get(ORIGIN_TRACEPARENT) or get("traceparent")
    bind_request(
        clean_request_id(rid if isinstance(rid, str) else None),
        trace_from_traceparent(tp if isinstance(tp, str) else None),
    )
