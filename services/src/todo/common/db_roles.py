"""Least privilege in the database: one login role per service, allowed only into its own schema.

The migration role owns every schema and table (it runs ``todo-migrate``). Each service connects as
``<prefix>_<package>`` (``todo_backend``, ``todo_audit``, ...), which after :func:`apply_service_roles`
may use its own schema and nothing else: the sync service, whose schema holds no tables, can read or
change no table at all, and the audit service may only add to its log, never rewrite it.

A role is created (or its password reset) when the migration is given its password and may create
roles (``CREATEROLE``, the in-cluster PostgreSQL); otherwise the operator creates it beforehand
(a managed database, docs/security.md) and the migration only grants.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping

from sqlalchemy import pool, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from todo.common.settings import async_database_url

DML = ("SELECT", "INSERT", "UPDATE", "DELETE")
#: Tables whose rows a service may add and read but never change: (schema, table) -> privileges.
APPEND_ONLY = {("audit", "audit_log"): ("SELECT", "INSERT")}
#: Alembic's bookkeeping: only the migration role touches it.
VERSION_TABLE = "alembic_version"


class ServiceRoleError(RuntimeError):
    """A service role is missing and cannot be created here: the message says what to run."""


def service_role(prefix: str, package: str) -> str:
    return f"{prefix}_{package}"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores: the password itself never reaches the server
    (nor a statement log)."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


async def _role_exists(conn: AsyncConnection, role: str) -> bool:
    found = await conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
    return found.scalar() is not None


async def ensure_login_role(conn: AsyncConnection, role: str, password: str | None) -> None:
    """Create ``role`` (or reset its password) when a password is given; else it must exist."""
    if password is None:
        if not await _role_exists(conn, role):
            raise ServiceRoleError(
                f"database role {role} does not exist: create it (CREATE ROLE {role} LOGIN PASSWORD "
                f"'...') or give the migration its password (DB_PASSWORD_<SERVICE>) and CREATEROLE"
            )
        return
    verb = "ALTER" if await _role_exists(conn, role) else "CREATE"
    # DDL takes no bound parameters: the verifier is a literal (base64, '$' and ':' need no quoting),
    # passed as is to the driver (SQLAlchemy's text() would read ':...' as a parameter).
    statement = f"{verb} ROLE {_ident(role)} LOGIN PASSWORD '{scram_verifier(password)}'"
    try:
        await conn.exec_driver_sql(statement)
    except DBAPIError as exc:
        # SQLAlchemy's message quotes the statement, verifier included: only the server's reason
        # goes on (a verifier lets anyone who reads the log guess the password offline).
        raise ServiceRoleError(_refusal(conn, role, exc)) from None


def _refusal(conn: AsyncConnection, role: str, exc: DBAPIError) -> str:
    server = exc.orig.__cause__ if exc.orig is not None else None
    reason = getattr(server, "message", None) or type(server or exc).__name__
    if getattr(server, "sqlstate", None) != "42501":  # insufficient_privilege
        return f"setting the password of database role {role} failed: {reason}"
    migrator = conn.engine.url.username or "<migration role>"
    return (
        f"the migration role {migrator} may not set the password of database role {role} ({reason}): "
        f"give it CREATEROLE, and on PostgreSQL 16+ also, for a role it did not create, "
        f"GRANT {role} TO {migrator} WITH ADMIN OPTION; or create the role yourself and give the "
        f"migration no DB_PASSWORD_<SERVICE> for it (docs/security.md)"
    )


async def grant_schema(conn: AsyncConnection, schema: str, role: str) -> None:
    """Exactly the privileges ``role`` needs on ``schema``'s tables, and none elsewhere."""
    r, s = _ident(role), _ident(schema)
    await conn.execute(text(f"GRANT USAGE ON SCHEMA {s} TO {r}"))
    await conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {r}"))
    tables = await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema})
    for (table,) in tables.all():
        if table == VERSION_TABLE:
            continue
        privileges = ", ".join(APPEND_ONLY.get((schema, table), DML))
        await conn.execute(text(f"GRANT {privileges} ON {s}.{_ident(table)} TO {r}"))
    await conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r}"))


async def apply_service_roles(
    database_url: str, prefix: str, packages: list[str], passwords: Mapping[str, str | None]
) -> None:
    """Run as the migration role after the migrations: each package's role and grants."""
    engine = create_async_engine(
        async_database_url(database_url), poolclass=pool.NullPool, hide_parameters=True
    )
    try:
        async with engine.begin() as conn:
            for package in packages:
                role = service_role(prefix, package)
                await ensure_login_role(conn, role, passwords.get(package))
                await grant_schema(conn, package, role)
    finally:
        await engine.dispose()
