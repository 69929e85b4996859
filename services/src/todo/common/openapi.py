"""Make a service's OpenAPI document say every answer an operation can give.

FastAPI documents what a route declares; the answers the platform adds around routes (a body that
is not JSON, too large or of another media type, a missing token, a database that is down) are
added here to every operation they apply to, each with its problem types. Checked against the
running services by schemathesis (tests/contract).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from todo.common.auth import require_app_token
from todo.common.errors import _TITLES, PROBLEM_BASE, PROBLEM_JSON, PROBLEM_SCHEMA

#: The problem types (``type`` without PROBLEM_BASE) the services answer with, by status.
PROBLEM_TYPES: dict[int, tuple[str, ...]] = {
    400: ("bad-request", "bad-cursor", "bad-event-type", "bad-time-window"),
    401: ("missing-token", "invalid-token", "expired-token", "invalid-credentials", "invalid-app-token"),
    404: ("not-found", "task-not-found"),
    409: ("conflict", "email-already-registered", "not-recurring", "series-ended"),
    413: ("payload-too-large",),
    415: ("unsupported-media-type",),
    422: ("validation-error",),
    429: ("too-many-requests",),
    503: ("database-unavailable", "busy", "auth-unavailable"),
}
APP_TOKEN_SCHEME = "daprApiToken"
_APP_TOKEN_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": "dapr-api-token",
    "description": "APP_API_TOKEN, sent by the Dapr sidecar (service invocation)",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
_CHALLENGE = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
_HEALTH_PATHS = ("/healthz", "/readyz")


def problem_response(status: int) -> dict[str, Any]:
    """An OpenAPI response of problem+json whose ``type`` is one of the status' problem types."""
    body: dict[str, Any] = copy.deepcopy(PROBLEM_SCHEMA)
    schema = body["content"][PROBLEM_JSON]["schema"]
    schema["properties"]["type"] = {
        "type": "string",
        "enum": [PROBLEM_BASE + t for t in PROBLEM_TYPES[status]],
    }
    schema["properties"]["status"] = {"type": "integer", "enum": [status]}
    response: dict[str, Any] = {"description": _TITLES.get(status, "Error"), **body}
    if status in (429, 503):
        response["headers"] = dict(_RETRY_AFTER)
    if status == 401:
        response["headers"] = dict(_CHALLENGE)
    return response


def _uses_app_token(route: APIRoute) -> bool:
    def walk(dependant: Any) -> bool:
        return any(d.call is require_app_token or walk(d) for d in dependant.dependencies)

    return walk(route.dependant)


def complete_responses(app: FastAPI) -> None:
    """Wrap ``app.openapi`` so that every operation lists the platform's answers (once, cached)."""
    build = app.openapi
    app_token_paths = {
        (route.path_format, method.lower())
        for route in app.routes
        if isinstance(route, APIRoute) and route.include_in_schema and _uses_app_token(route)
        for method in route.methods or ()
    }

    def openapi() -> dict[str, Any]:
        schema = build()
        if schema.get("x-todo-complete"):
            return schema
        for path, operations in schema.get("paths", {}).items():
            if path in _HEALTH_PATHS:  # plain JSON, never problem+json
                continue
            for method, operation in operations.items():
                _complete(operation, (path, method) in app_token_paths)
        if app_token_paths:
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes[APP_TOKEN_SCHEME] = dict(_APP_TOKEN_SCHEME)
        schema["x-todo-complete"] = True
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(operation: dict[str, Any], app_token: bool) -> None:
    responses = operation.setdefault("responses", {})
    statuses: set[int] = set()
    if "requestBody" in operation:
        statuses |= {400, 413, 415, 422}
    if operation.get("parameters"):
        statuses.add(422)
    if any(p.get("in") == "path" for p in operation.get("parameters", [])):
        statuses.add(404)
    if app_token:
        operation["security"] = [{APP_TOKEN_SCHEME: []}]
    if operation.get("security"):
        statuses.add(401)
    statuses.add(503)  # the database (or the hashing queue) is not available; retry
    # a status the route declared keeps its description; every problem answer gets its types
    for status in sorted(statuses | {int(s) for s in responses if int(s) in PROBLEM_TYPES}):
        documented = responses.get(str(status)) or responses.get(status) or {}
        responses.pop(status, None)
        description = documented.get("description", _TITLES.get(status, "Error"))
        responses[str(status)] = {**problem_response(status), "description": description}
