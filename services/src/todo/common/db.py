"""Async SQLAlchemy 2 engine and sessions (asyncpg). Each service keeps its tables in its own schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

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


class Database:
    """Owns the engine and the session factory of one service process."""

    def __init__(
        self, url: str, *, pool_size: int = 10, max_overflow: int = 10, application_name: str = "todo"
    ):
        self.engine: AsyncEngine = create_async_engine(
            async_database_url(url),
            pool_size=pool_size,
            max_overflow=max_overflow,
            # No pre-ping (it costs a round trip per request): a connection that died with the server is
            # invalidated on first use and the request answered 503 (see errors.py).
            pool_recycle=1800,
            connect_args={"server_settings": {"application_name": application_name}, "timeout": 10},
        )
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

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:  # readiness: any failure means "not ready", never an error page
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()


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
