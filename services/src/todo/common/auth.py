"""JWT (HS256) access tokens and the FastAPI dependency that yields the current user id."""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
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


#: Defaults of JWT_ISSUER, JWT_AUDIENCE and JWT_KEY_ID (settings.py).
DEFAULT_ISSUER = "todo-backend"
DEFAULT_AUDIENCE = "todo"
DEFAULT_KEY_ID = "1"
#: The ``typ`` claim of an access token: no other kind of token is accepted where one is expected.
ACCESS_TOKEN_TYPE = "access"


@dataclass(frozen=True)
class JwtKeys:
    """The signing key (with its ``kid``) and, while a rotation is under way, the previous key that
    still verifies the tokens it signed; the issuer and audience every token must name."""

    secret: str = field(repr=False)
    key_id: str = DEFAULT_KEY_ID
    previous_secret: str | None = field(default=None, repr=False)
    previous_key_id: str | None = None
    issuer: str = DEFAULT_ISSUER
    audience: str = DEFAULT_AUDIENCE

    def secret_for(self, key_id: Any) -> str | None:
        if key_id == self.key_id:
            return self.secret
        if self.previous_secret is not None and key_id == self.previous_key_id:
            return self.previous_secret
        return None

    @classmethod
    def from_settings(cls, settings: Any) -> JwtKeys | None:
        """The keys of a service's settings; None without JWT_SECRET. ValueError names what to fix."""
        if settings.jwt_secret is None:
            return None
        previous = settings.jwt_previous_secret
        if previous is not None and settings.jwt_previous_key_id in (None, "", settings.jwt_key_id):
            raise ValueError(
                "JWT_PREVIOUS_SECRET needs JWT_PREVIOUS_KEY_ID, the key id it signed with, different "
                "from JWT_KEY_ID"
            )
        return cls(
            secret=settings.jwt_secret.get_secret_value(),
            key_id=settings.jwt_key_id,
            previous_secret=previous.get_secret_value() if previous is not None else None,
            previous_key_id=settings.jwt_previous_key_id if previous is not None else None,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )


def _keys(keys: JwtKeys | str) -> JwtKeys:
    return JwtKeys(secret=keys) if isinstance(keys, str) else keys


def create_access_token(user_id: uuid.UUID, keys: JwtKeys | str, ttl_seconds: int = 3600) -> str:
    """A token signed with the current key (its ``kid`` in the header). A bare secret stands for
    that key with the default key id, issuer and audience."""
    keys = _keys(keys)
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + ttl_seconds,
        "iss": keys.issuer,
        "aud": keys.audience,
        "typ": ACCESS_TOKEN_TYPE,
    }
    return jwt.encode(claims, keys.secret, algorithm=ALGORITHM, headers={"kid": keys.key_id})


def decode_access_token(token: str, keys: JwtKeys | str) -> uuid.UUID:
    """Return the user id of a valid token; raise ProblemError(401) otherwise."""
    return verified_token(token, keys)[0]


def verified_token(token: str, keys: JwtKeys | str) -> tuple[uuid.UUID, float]:
    """User id and expiry (epoch seconds) of a valid token; raise ProblemError(401) otherwise."""
    try:
        user_id, expires_at = _verified_token(token, _keys(keys))
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
def _verified_token(token: str, keys: JwtKeys) -> tuple[uuid.UUID, float]:
    """User id and expiry of a token whose signature and claims are valid. A client sends the same
    token with every request until it expires, so verified tokens are remembered (about a tenth of
    a request's CPU); a token that fails raises and is never remembered."""
    secret = keys.secret_for(jwt.get_unverified_header(token).get("kid"))
    if secret is None:  # signed with a key this service does not (or no longer) trust
        raise jwt.InvalidSignatureError("unknown key id")
    claims = jwt.decode(
        token,
        secret,
        algorithms=[ALGORITHM],
        issuer=keys.issuer,
        audience=keys.audience,
        options={"require": ["sub", "exp", "iat", "iss", "aud", "typ"]},
    )
    if claims["typ"] != ACCESS_TOKEN_TYPE:
        raise jwt.InvalidTokenError("not an access token")
    return uuid.UUID(str(claims["sub"])), float(claims["exp"])


def jwt_keys_of(app: Any) -> JwtKeys:
    keys: JwtKeys | None = app.state.jwt_keys
    if keys is None:
        raise ProblemError(503, "auth-unavailable", "Authentication is not configured on this service.")
    return keys


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
    user_id = decode_access_token(token, jwt_keys_of(request.app))
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
