"""Driver statements (Database.driver_execute) against the test bed's PostgreSQL: parameters by bind
name through SQLAlchemy's bind processors, and a pool that survives connections the server drops."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy import Integer, Text, bindparam, func, insert, literal, select, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Mapped, mapped_column
from testbed.polling import eventually_async
from todo.common.db import Database, DriverStatement, declarative_base

pytestmark = pytest.mark.testbed

Base = declarative_base("dbtest")


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    body: Mapped[dict] = mapped_column(JSONB)
    labels: Mapped[list[str]] = mapped_column(ARRAY(Text))


INSERT_NOTE = DriverStatement(
    insert(Note.__table__).values(
        id=bindparam("id", type_=Note.__table__.c.id.type),
        body=bindparam("body", type_=Note.__table__.c.body.type),
        labels=bindparam("labels", type_=Note.__table__.c.labels.type),
    )
)


@pytest.fixture
async def db(pg):
    url = pg.create_database(f"db_test_{uuid.uuid4().hex[:8]}")
    database = Database(url, pool_size=2, max_overflow=0, application_name="db-test")
    async with database.engine.begin() as conn:
        await conn.execute(text("CREATE SCHEMA IF NOT EXISTS dbtest"))
        await conn.run_sync(Base.metadata.create_all)
    database.url = url
    yield database
    await database.dispose()


async def _pooled_connections(url: str, terminate: bool = False) -> set[int]:
    """Server pids of the pool's connections (terminated first when asked)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pid, CASE WHEN $1 THEN pg_terminate_backend(pid) END FROM pg_stat_activity "
            "WHERE application_name = 'db-test' AND pid <> pg_backend_pid()",
            terminate,
        )
        return {row["pid"] for row in rows}
    finally:
        await conn.close()


async def test_parameters_go_through_the_bind_processors(db):
    note_id = uuid.uuid4()
    status = await db.driver_execute(
        INSERT_NOTE, {"id": note_id, "body": {"a": [1, "x"], "when": "now"}, "labels": ["p", "q"]}
    )
    assert status == "INSERT 0 1"
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(Note.body, Note.labels).where(Note.id == note_id))).one()
    assert row.body == {"a": [1, "x"], "when": "now"} and row.labels == ["p", "q"]


async def test_a_missing_parameter_is_a_clear_error(db):
    with pytest.raises(ValueError, match="'labels' has no value"):
        await db.driver_execute(INSERT_NOTE, {"id": uuid.uuid4(), "body": {}})


async def test_a_failing_statement_keeps_its_connection(db):
    note_id = uuid.uuid4()
    await db.driver_execute(INSERT_NOTE, {"id": note_id, "body": {}, "labels": []})
    before = await _pooled_connections(db.url)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.driver_execute(INSERT_NOTE, {"id": note_id, "body": {}, "labels": []})
    assert db.engine.sync_engine.pool.checkedout() == 0
    assert await _pooled_connections(db.url) == before  # returned to the pool, not dropped


async def test_connections_the_server_closed_in_the_pool_are_replaced(db):
    def insert() -> object:
        return db.driver_execute(INSERT_NOTE, {"id": uuid.uuid4(), "body": {}, "labels": []})

    for _ in range(2):  # fill the pool
        await asyncio.gather(insert(), insert())
    assert len(await _pooled_connections(db.url, terminate=True)) == 2
    await asyncio.sleep(0.2)  # asyncpg sees the closed sockets
    for _ in range(3):  # no request pays for the dead connections
        await insert()
    async with db.engine.connect() as conn:  # SQLAlchemy's own path benefits too
        assert (await conn.execute(select(func.count()).select_from(Note))).scalar_one() == 7


async def test_a_connection_lost_mid_statement_is_a_disconnection_and_dropped(db):
    sleep = DriverStatement(select(func.pg_sleep(bindparam("seconds", type_=Integer()))))
    running = asyncio.create_task(db.driver_execute(sleep, {"seconds": 5}))

    async def statement_running() -> bool:
        conn = await asyncpg.connect(db.url)
        try:
            return await conn.fetchval(
                "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'db-test'"
                " AND state = 'active' AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()

    await eventually_async(statement_running, "the pg_sleep statement running", within=30, interval=0.05)
    assert len(await _pooled_connections(db.url, terminate=True)) == 1
    with pytest.raises(DisconnectionError, match="database connection lost"):
        await running
    pool = db.engine.sync_engine.pool
    assert pool.checkedout() == 0
    # the next statement gets a working connection
    assert await db.driver_execute(DriverStatement(select(literal(1))), {}) == "SELECT 1"
