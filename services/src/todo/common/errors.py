"""RFC 7807 problem+json for every error, including validation (422 with the field path)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from todo.common.logging import get_logger

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://todo.example/problems/"
_log = get_logger("todo.errors")

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Validation Error",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ProblemError(Exception):
    """Raise from a route or service function to answer with a problem document."""

    def __init__(
        self,
        status: int,
        problem: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.problem = problem
        self.detail = detail
        self.title = title or _TITLES.get(status, "Error")
        self.headers = headers
        self.extra = extra


def problem_response(
    request: Request | None,
    status: int,
    problem: str,
    detail: str,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + problem,
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    content_type = request.headers.get("content-type")
    if (
        content_type
        and not _is_json(content_type)
        and any(tuple(err.get("loc", ()))[:1] == ("body",) for err in exc.errors())
    ):
        # FastAPI hands a body that is not JSON to validation as bytes; the fault is the media type
        return problem_response(
            request, 415, "unsupported-media-type", "The request body must be application/json."
        )
    invalid_json = next((err for err in exc.errors() if err.get("type") == "json_invalid"), None)
    if invalid_json is not None:  # a malformed body is 400, like one that is not text at all
        reason = (invalid_json.get("ctx") or {}).get("error", "syntax error")
        return problem_response(request, 400, "bad-request", f"The request body is not valid JSON: {reason}.")
    errors = [
        {
            "field": _location(err.get("loc", ())),
            "message": err.get("msg", "invalid"),
            "type": err.get("type", "value_error"),
        }
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"field": "", "message": "invalid request"}
    detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    return problem_response(request, 422, "validation-error", detail, errors=errors)


#: The problem type of an HTTPException raised by Starlette or FastAPI themselves
HTTP_ERROR_PROBLEMS = {
    400: "bad-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
}


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method some route of the app serves at this path. Starlette's 405 names only the route
    that matched the path first (``Allow: POST`` for /api/tasks, which serves GET too); the app's
    routers are asked for each method instead."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
    return ", ".join(allowed)


async def _http_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    slug = HTTP_ERROR_PROBLEMS.get(status, "http-error")
    detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(status, "Error")
    headers = dict(getattr(exc, "headers", None) or {})
    if status == 405:
        headers["Allow"] = allowed_methods(request)
    return problem_response(request, status, slug, detail, headers=headers or None)


async def _problem_handler(request: Request, exc: ProblemError) -> JSONResponse:
    return problem_response(request, exc.status, exc.problem, exc.detail, exc.title, exc.headers, **exc.extra)


async def _database_handler(request: Request, exc: Exception) -> JSONResponse:
    # Connection-level failures (server restarted or unreachable): the client may retry.
    _log.warning("database unavailable", error=f"{type(exc).__name__}: {str(exc)[:300]}")
    return problem_response(
        request,
        503,
        "database-unavailable",
        "The database is not reachable; retry shortly.",
        headers={"Retry-After": "1"},
    )


async def _unhandled_handler(request: Request, exc: Exception) -> JSONResponse:
    _log.error("unhandled error", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
    return problem_response(request, 500, "internal-error", "An unexpected error occurred.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_handler)  # type: ignore[arg-type]
    app.add_exception_handler(ProblemError, _problem_handler)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unhandled_handler)
    for exc_type in _database_connection_errors():
        app.add_exception_handler(exc_type, _database_handler)


def _database_connection_errors() -> tuple[type[Exception], ...]:
    from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    return (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError, OSError)


PROBLEM_SCHEMA = {
    "content": {
        PROBLEM_JSON: {
            "schema": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "instance": {"type": "string"},
                },
                "required": ["type", "title", "status", "detail"],
            }
        }
    }
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting problem+json answers."""
    return {s: {"description": _TITLES.get(s, "Error"), **PROBLEM_SCHEMA} for s in statuses}
