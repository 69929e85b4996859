"""Async SQLAlchemy 2 engine and sessions (asyncpg). Each service keeps its tables in its own schema."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import Depends, Request
from sqlalchemy import MetaData, event, text
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.base import Executable
from sqlalchemy.util import greenlet_spawn

from todo.common.settings import async_database_url

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_metadata(schema: str) -> MetaData:
    """MetaData whose tables all live in ``schema`` (the service's package name)."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def declarative_base(schema: str) -> type[DeclarativeBase]:
    """A declarative base for one service: ``Base = declarative_base("audit")``."""

    class Base(DeclarativeBase):
        metadata = service_metadata(schema)

    return Base


def _json_text(value: Any) -> str:
    """JSON/JSONB parameters (orjson: several times faster than the json module's dumps)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


#: The dialect driver statements are compiled for; JSON serialised as the engines serialise it.
_DRIVER_DIALECT = PGDialect_asyncpg(json_serializer=_json_text)  # type: ignore[no-untyped-call]  # unannotated

#: Errors after which a driver connection cannot be trusted: the server or the socket went away, or
#: the statement was interrupted half-way. A plain PostgresError (a constraint, a syntax error)
#: leaves the connection usable.
_LOST_CONNECTION_ERRORS = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, server starting or stopping
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


class DriverStatement:
    """A Core statement compiled once into asyncpg's SQL, for :meth:`Database.driver_execute`.

    For the hottest single-statement writes. SQLAlchemy's per-call execution (execution context,
    parameter processing, result wrapping, the greenlet bridge) costs more CPU than asyncpg's own
    work for a short INSERT; the statement is still built from the table metadata, only its
    execution skips those layers. Parameters are given by bind name, as with ``Connection.execute``,
    and go through the same bind processors (JSONB serialisation, arrays).
    """

    def __init__(self, statement: Executable) -> None:
        compiled = statement.compile(dialect=_DRIVER_DIALECT)  # type: ignore[attr-defined]  # a ClauseElement
        self.sql = str(compiled)
        self._names = tuple(compiled.positiontup or ())
        binds = [compiled.binds[name] for name in self._names]
        #: values fixed in the statement (literals); _REQUIRED where the caller must give one
        self._fixed = tuple(_REQUIRED if bind.required else bind.effective_value for bind in binds)
        self._processors = tuple(
            bind.type.dialect_impl(_DRIVER_DIALECT).bind_processor(_DRIVER_DIALECT) for bind in binds
        )

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        arguments = []
        for name, fixed, process in zip(self._names, self._fixed, self._processors, strict=True):
            value = params.get(name, fixed)
            if value is _REQUIRED:
                raise ValueError(f"statement parameter {name!r} has no value")
            arguments.append(value if process is None or value is None else process(value))
        return arguments


_REQUIRED = object()


@dataclass(frozen=True)
class DatabaseTimeouts:
    """How long a service waits for a database that stopped answering (settings ``DB_*_SECONDS``)."""

    statement: float = 5.0  # server side: PostgreSQL cancels the statement
    command: float = 8.0  # client side: asyncpg gives up and the connection is dropped
    pool: float = 5.0  # waiting for a pooled connection
    connect: float = 5.0  # opening a connection, including its startup
    keepalive: int = 30  # idle seconds before TCP keepalive probes; a peer gone is found in 2x that

    @classmethod
    def from_settings(cls, settings: Any) -> DatabaseTimeouts:
        return cls(
            statement=settings.db_statement_timeout_seconds,
            command=settings.db_command_timeout_seconds,
            pool=settings.db_pool_timeout_seconds,
            connect=settings.db_connect_timeout_seconds,
            keepalive=settings.db_keepalive_seconds,
        )

    def server_settings(self) -> dict[str, str]:
        keepalive = self.keepalive
        return {
            "statement_timeout": str(int(self.statement * 1000)),
            # a transaction left open by a client that froze must not hold its locks for ever
            "idle_in_transaction_session_timeout": str(int(max(self.command, self.statement) * 2000)),
            "tcp_keepalives_idle": str(keepalive),
            "tcp_keepalives_interval": str(max(1, keepalive // 6)),
            "tcp_keepalives_count": "6",
        }


def _set_client_keepalive(sock: socket.socket | None, keepalive: int) -> None:
    """TCP keepalive and a user timeout on the client's socket (asyncpg sets neither): a primary
    that vanished without a reset is noticed in about 2x ``keepalive`` seconds instead of the
    kernel's default of two hours (idle) or fifteen minutes (unacknowledged data)."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # a Unix socket has no peer to lose
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", keepalive),
        ("TCP_KEEPINTVL", max(1, keepalive // 6)),
        ("TCP_KEEPCNT", 6),
        ("TCP_USER_TIMEOUT", keepalive * 2000),
    ):
        if hasattr(socket, name):  # Linux; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


class Database:
    """Owns the engine and the session factory of one service process."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        application_name: str = "todo",
        timeouts: DatabaseTimeouts | None = None,
    ):
        timeouts = timeouts or DatabaseTimeouts()
        self.timeouts = timeouts
        self.engine: AsyncEngine = create_async_engine(
            async_database_url(url),
            pool_size=pool_size,
            max_overflow=max_overflow,
            # No pre-ping (it costs a round trip per request): a connection the server closed while
            # pooled is replaced at checkout (_refuse_closed_connection); one lost during a request
            # is invalidated and the request answered 503 (see errors.py).
            pool_recycle=1800,
            pool_timeout=timeouts.pool,
            connect_args={
                "server_settings": {"application_name": application_name, **timeouts.server_settings()},
                "timeout": timeouts.connect,
                "command_timeout": timeouts.command,
            },
            json_serializer=_json_text,
            # A failing statement's message would otherwise quote its parameters (e-mails, password
            # hashes, task text), and error logs carry that message.
            hide_parameters=True,
        )
        event.listen(self.engine.sync_engine.pool, "checkout", _refuse_closed_connection)

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            transport = dbapi_connection.driver_connection._transport  # asyncpg keeps the socket there
            _set_client_keepalive(transport.get_extra_info("socket"), timeouts.keepalive)

        event.listen(self.engine.sync_engine.pool, "connect", on_connect)
        event.listen(self.engine.sync_engine, "handle_error", _timed_out_is_a_disconnect)
        # Without overflow a returned connection always goes back to the queue (no I/O), so
        # driver_execute can hand it back without the greenlet bridge.
        self._checkin_needs_io = max_overflow > 0
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        #: Same pool, no BEGIN/COMMIT round trips: for reads, and for single-statement writes.
        self.autocommit_engine: AsyncEngine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.read_sessionmaker = async_sessionmaker(self.autocommit_engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    async def driver_execute(self, statement: DriverStatement, params: Mapping[str, Any]) -> str:
        """Run ``statement`` once in autocommit on a pooled connection's asyncpg connection.

        Returns asyncpg's status line (e.g. ``INSERT 0 1``). A lost connection is dropped from the
        pool and reported as ``DisconnectionError`` (a 503 problem for HTTP callers, like a
        disconnect seen through SQLAlchemy)."""
        arguments = statement.arguments(params)
        pooled = await self.engine.raw_connection()
        try:
            driver: Any = pooled.driver_connection
            status: str = await driver.execute(statement.sql, *arguments)
            return status
        except BaseException as exc:
            if isinstance(exc, asyncpg.PostgresError) and not isinstance(exc, _LOST_CONNECTION_ERRORS):
                raise  # the statement failed, the connection is fine
            await greenlet_spawn(pooled.invalidate, exc)
            if isinstance(exc, _LOST_CONNECTION_ERRORS):
                raise DisconnectionError(f"database connection lost: {type(exc).__name__}") from exc
            raise
        finally:
            if self._checkin_needs_io:
                await greenlet_spawn(pooled.close)
            else:
                pooled.close()  # after invalidate() this only forgets the dead connection

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:  # readiness: any failure means "not ready", never an error page
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()


def _timed_out_is_a_disconnect(context: Any) -> None:
    """A command that timed out (asyncpg's command timeout) leaves its connection waiting for an
    answer that may never come: drop that connection, not the pool, rather than hand it out again
    (the error itself, a TimeoutError, is answered 503 like a lost connection)."""
    if isinstance(context.original_exception, TimeoutError):
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = False


def _refuse_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout hook: a connection the server closed while it sat in the pool (a restart, an
    idle timeout) is replaced before use instead of failing the request. No round trip: asyncpg
    notices the closed socket by itself."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("pooled connection was closed by the server")


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: one session per request (routes commit explicitly)."""
    async with request.app.state.db.sessionmaker() as session:
        yield session


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: an autocommit session for read-only requests (one round trip per query)."""
    async with request.app.state.db.read_sessionmaker() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]
ReadSession = Annotated[AsyncSession, Depends(get_read_session)]
