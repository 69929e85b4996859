"""The idempotent consumer on a real PostgreSQL: effect and processed id commit together; repeats are
ignored; failures ask Dapr to redeliver; poison goes to the DLQ (through a real daprd to Kafka)."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
from sqlalchemy import String, func, select
from sqlalchemy.orm import Mapped, mapped_column
from todo.common.cloudevents import build_event
from todo.common.consumer import EventConsumer, EventStatus, PoisonEvent, ProcessedEventMixin
from todo.common.dapr import DaprClient
from todo.common.db import Database, declarative_base

pytestmark = pytest.mark.testbed

Base = declarative_base("consumertest")


class ProcessedEvent(ProcessedEventMixin, Base):
    __tablename__ = "processed_events"


class Effect(Base):
    __tablename__ = "effects"
    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(100))


@pytest.fixture(scope="module")
async def db(pg):
    from sqlalchemy import text

    database = Database(pg.create_database("consumer_test"), pool_size=2)
    async with database.engine.begin() as conn:
        await conn.execute(text("CREATE SCHEMA consumertest"))
        await conn.run_sync(Base.metadata.create_all)
    yield database
    await database.dispose()


async def apply(session, event) -> None:
    if event.data == "poison":
        raise PoisonEvent("cannot use this")
    if event.data == "flaky":
        raise RuntimeError("database hiccup")
    session.add(Effect(subject=event.subject))


def _body(data, subject: str | None = None) -> bytes:
    event = build_event("com.todo.task.created", "/test", subject or str(uuid.uuid4()), data)
    return orjson.dumps({**event, "topic": "task-events", "pubsubname": "pubsub"})


async def _count(db, model, **where) -> int:
    async with db.session() as s:
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return (await s.execute(stmt)).scalar_one()


def _consumer(db, dapr_url: str = "http://127.0.0.1:9") -> EventConsumer:
    return EventConsumer(db, ProcessedEvent, DaprClient(dapr_url, timeout=2.0), "task-events", "/todo/test")


async def test_event_is_applied_once_however_often_delivered(db):
    consumer = _consumer(db)
    body = _body({"x": 1}, subject="s-once")
    results = await asyncio.gather(*(consumer.handle(body, apply) for _ in range(4)))
    assert set(results) == {EventStatus.SUCCESS}
    assert await _count(db, Effect, subject="s-once") == 1
    assert await consumer.handle(body, apply) is EventStatus.SUCCESS
    assert await _count(db, Effect, subject="s-once") == 1


async def test_transient_failure_asks_for_redelivery_and_records_nothing(db):
    consumer = _consumer(db)
    body = _body("flaky", subject="s-flaky")
    assert await consumer.handle(body, apply) is EventStatus.RETRY
    event_id = orjson.loads(body)["id"]
    assert await _count(db, ProcessedEvent, event_id=event_id) == 0
    # Dapr redelivers; this time the handler succeeds, and the event is recorded with its effect
    assert await consumer.handle(body, _ok) is EventStatus.SUCCESS
    assert await _count(db, ProcessedEvent, event_id=event_id) == 1
    assert await _count(db, Effect, subject="s-flaky") == 1


async def _ok(session, event) -> None:
    session.add(Effect(subject=event.subject))


async def test_poison_without_a_reachable_dlq_is_retried(db):
    consumer = _consumer(db)
    assert await consumer.handle(b"{not json", apply) is EventStatus.RETRY
    assert await consumer.handle(_body("poison"), apply) is EventStatus.RETRY


async def test_poison_goes_to_the_dlq_and_is_acknowledged(db, daprd_factory, kafka, tmp_path):
    from confluent_kafka import Consumer
    from testbed.daprd import kafka_pubsub_component

    (tmp_path / "pubsub.yaml").write_text(
        kafka_pubsub_component(kafka.plaintext, consumer_group="consumertest")
    )
    sidecar = daprd_factory("consumertest", None, tmp_path)
    consumer = _consumer(db, f"http://127.0.0.1:{sidecar.http_port}")
    marker = uuid.uuid4().hex  # the shared Kafka may hold dead letters of other tests
    poison = _body("poison", subject=f"s-poison-{marker}")
    poison_id = orjson.loads(poison)["id"]
    assert await consumer.handle(poison, apply) is EventStatus.SUCCESS
    assert await consumer.handle(f"not json {marker}".encode(), apply) is EventStatus.SUCCESS
    assert await _count(db, Effect, subject=f"s-poison-{marker}") == 0

    reader = Consumer(
        {
            **kafka.client_config("plaintext"),
            "group.id": f"t-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    reader.subscribe(["task-events-dlq"])
    found: list[dict] = []

    def read() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(found) < 2:
            msg = reader.poll(0.5)
            if msg is not None and not msg.error():
                value = orjson.loads(msg.value())
                if value.get("id") == poison_id or marker in str(value.get("data")):
                    found.append(value)

    await asyncio.to_thread(read)
    reader.close()
    poisoned = [e for e in found if e.get("id") == poison_id]
    wrapped = [e for e in found if e.get("type") == "com.todo.deadletter"]
    assert poisoned and poisoned[0]["subject"] == f"s-poison-{marker}"
    assert poisoned[0]["deadletterreason"] == "cannot use this"
    assert wrapped and "not json" in wrapped[0]["data"]["body"]
