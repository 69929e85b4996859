"""Alembic helpers: each service keeps ``todo/<package>/migrations/`` (env.py + versions/) whose tables
live in the schema named after the package, with the version table in that schema too.

A service's ``migrations/env.py`` is just::

    from todo.common.migrations import run_env
    from todo.audit.models import Base
    run_env(Base.metadata, schema="audit")
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from todo.common.settings import async_database_url

PACKAGES = ("backend", "audit", "recurring", "notification", "sync")


def _include_object(schema: str) -> Any:
    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table":
            return getattr(obj, "schema", None) == schema
        return True

    return include


def run_env(target_metadata: MetaData, schema: str) -> None:
    """Body of a service's env.py (online mode only: migrations always run against a database)."""
    config = context.config
    url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("todo-migrate: DATABASE_URL (or DATABASE_URL_FILE) is not set")

    def do_run(connection: Any) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_object=_include_object(schema),
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(async_database_url(url), poolclass=pool.NullPool, hide_parameters=True)
        try:
            async with engine.connect() as conn:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                await conn.commit()
                await conn.run_sync(do_run)
                await conn.commit()
        finally:
            await engine.dispose()

    asyncio.run(run())


def alembic_config(package: str, database_url: str) -> Config:
    if package not in PACKAGES:
        raise ValueError(f"unknown service package {package!r}; one of {', '.join(PACKAGES)}")
    cfg = Config()
    cfg.set_main_option("script_location", f"todo.{package}:migrations")
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(package: str, database_url: str, revision: str = "head") -> None:
    """Run a package's migrations (blocking; call from a thread inside an event loop)."""
    command.upgrade(alembic_config(package, database_url), revision)


async def upgrade_async(package: str, database_url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, package, database_url, revision)
