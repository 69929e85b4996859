"""JWT (HS256) access tokens and the FastAPI dependency that yields the current user id."""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIRouter

from todo.common.context import bind
from todo.common.errors import ProblemError

ALGORITHM = "HS256"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
#: The OpenAPI security scheme of the user endpoints (see document_bearer_auth).
BEARER_SCHEME_NAME = "HTTPBearer"
_BEARER_SCHEME = {"type": "http", "scheme": "bearer", "description": "JWT from POST /api/auth/login"}


def create_access_token(user_id: uuid.UUID, secret: str, ttl_seconds: int = 3600) -> str:
    now = int(time.time())
    claims = {"sub": str(user_id), "iat": now, "exp": now + ttl_seconds, "typ": "access"}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_access_token(token: str, secret: str) -> uuid.UUID:
    """Return the user id of a valid token; raise ProblemError(401) otherwise."""
    return verified_token(token, secret)[0]


def verified_token(token: str, secret: str) -> tuple[uuid.UUID, float]:
    """User id and expiry (epoch seconds) of a valid token; raise ProblemError(401) otherwise."""
    try:
        user_id, expires_at = _verified_token(token, secret)
    except jwt.ExpiredSignatureError:
        raise _expired() from None
    except jwt.InvalidSignatureError:
        raise ProblemError(
            401, "invalid-token", "The access token signature is invalid.", headers=_CHALLENGE
        ) from None
    except jwt.PyJWTError:
        raise ProblemError(
            401, "invalid-token", "The access token is malformed.", headers=_CHALLENGE
        ) from None
    except ValueError:
        raise ProblemError(
            401, "invalid-token", "The access token names no valid user.", headers=_CHALLENGE
        ) from None
    if expires_at <= time.time():  # a token verified earlier has expired since (PyJWT's rule)
        raise _expired()
    return user_id, expires_at


def _expired() -> ProblemError:
    return ProblemError(401, "expired-token", "The access token has expired.", headers=_CHALLENGE)


@lru_cache(maxsize=4096)
def _verified_token(token: str, secret: str) -> tuple[uuid.UUID, float]:
    """User id and expiry of a token whose signature and claims are valid. A client sends the same
    token with every request until it expires, so verified tokens are remembered (about a tenth of
    a request's CPU); a token that fails raises and is never remembered."""
    claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp", "iat"]})
    return uuid.UUID(str(claims["sub"])), float(claims["exp"])


def jwt_secret_of(request: Request) -> str:
    secret = request.app.state.settings.jwt_secret
    if secret is None:
        raise ProblemError(503, "auth-unavailable", "Authentication is not configured on this service.")
    return secret.get_secret_value()


async def current_user_id(request: Request) -> uuid.UUID:
    """FastAPI dependency: the user of the request's bearer token (401 problem otherwise).

    It reads the header itself instead of depending on fastapi.security.HTTPBearer: every
    dependency costs FastAPI's resolver work per request (about 50 µs for that one, 4 % of a create
    request); document_bearer_auth puts the scheme into the OpenAPI document instead."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ProblemError(
            401, "missing-token", "An Authorization: Bearer <token> header is required.", headers=_CHALLENGE
        )
    user_id = decode_access_token(token, jwt_secret_of(request))
    bind(user_id=user_id)
    return user_id


CurrentUser = Annotated[uuid.UUID, Depends(current_user_id)]


def _needs_user(dependant: Dependant) -> bool:
    return any(d.call is current_user_id or _needs_user(d) for d in dependant.dependencies)


def document_bearer_auth(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """Mark every operation of ``routers`` that depends on current_user_id as secured by the bearer
    scheme, and declare the scheme in the app's OpenAPI components. Call before the routers are
    included (FastAPI copies a route's OpenAPI extras when it is included)."""
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and _needs_user(route.dependant):
                extra = dict(route.openapi_extra or {})
                extra.setdefault("security", [{BEARER_SCHEME_NAME: []}])
                route.openapi_extra = extra
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()  # FastAPI's, cached by FastAPI
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes.setdefault(BEARER_SCHEME_NAME, dict(_BEARER_SCHEME))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def token_matches(presented: str | None, expected: str | None) -> bool:
    """Constant-time comparison of a presented shared token (e.g. dapr-api-token) with the expected one."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


async def require_app_token(request: Request) -> None:
    """Dependency for internal endpoints reached through Dapr service invocation.

    Dapr sends ``dapr-api-token: <APP_API_TOKEN>`` to the app when the app token is configured.
    """
    expected = request.app.state.settings.app_api_token
    presented = request.headers.get("dapr-api-token")
    if not token_matches(presented, expected.get_secret_value() if expected else None):
        raise ProblemError(401, "invalid-app-token", "This endpoint is only reachable through Dapr.")
