"""The idempotent consumer on a real PostgreSQL: effect and processed id commit together; repeats are
ignored; failures ask Dapr to redeliver; poison goes to the DLQ (through a real daprd to Kafka)."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from sqlalchemy import String, func, select
from sqlalchemy.orm import Mapped, mapped_column
from testbed.polling import eventually, eventually_async
from todo.common.cloudevents import build_event
from todo.common.consumer import DatabaseLedger, EventConsumer, EventStatus, PoisonEvent, ProcessedEventMixin
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
    ledger = DatabaseLedger(db, ProcessedEvent, "task-events")
    return EventConsumer(DaprClient(dapr_url, timeout=2.0), "task-events", "/todo/test", apply, ledger)


async def test_event_is_applied_once_however_often_delivered(db):
    consumer = _consumer(db)
    body = _body({"x": 1}, subject="s-once")
    results = await asyncio.gather(*(consumer.handle(body) for _ in range(4)))
    assert set(results) == {EventStatus.SUCCESS}
    assert await _count(db, Effect, subject="s-once") == 1
    assert await consumer.handle(body) is EventStatus.SUCCESS
    assert await _count(db, Effect, subject="s-once") == 1


async def test_transient_failure_asks_for_redelivery_and_records_nothing(db):
    consumer = _consumer(db)
    body = _body("flaky", subject="s-flaky")
    assert await consumer.handle(body) is EventStatus.RETRY
    event_id = orjson.loads(body)["id"]
    assert await _count(db, ProcessedEvent, event_id=event_id) == 0
    # Dapr redelivers; this time the handler succeeds, and the event is recorded with its effect
    consumer.handler = _ok
    assert await consumer.handle(body) is EventStatus.SUCCESS
    assert await _count(db, ProcessedEvent, event_id=event_id) == 1
    assert await _count(db, Effect, subject="s-flaky") == 1


async def _ok(session, event) -> None:
    session.add(Effect(subject=event.subject))


async def test_poison_without_a_reachable_dlq_is_retried(db):
    consumer = _consumer(db)
    assert await consumer.handle(b"{not json") is EventStatus.RETRY
    assert await consumer.handle(_body("poison")) is EventStatus.RETRY


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
    assert await consumer.handle(poison) is EventStatus.SUCCESS
    assert await consumer.handle(f"not json {marker}".encode()) is EventStatus.SUCCESS
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

    def read_both() -> bool:
        msg = reader.poll(0.5)
        if msg is not None and not msg.error():
            value = orjson.loads(msg.value())
            if value.get("id") == poison_id or marker in str(value.get("data")):
                found.append(value)
        assert len(found) >= 2, f"{len(found)} of the two dead letters read"
        return True

    try:
        await asyncio.to_thread(
            eventually, read_both, "both dead letters on task-events-dlq", within=60, interval=0
        )
    finally:
        reader.close()
    poisoned = [e for e in found if e.get("id") == poison_id]
    wrapped = [e for e in found if e.get("type") == "com.todo.deadletter"]
    assert poisoned and poisoned[0]["subject"] == f"s-poison-{marker}"
    assert poisoned[0]["deadletterreason"] == "cannot use this"
    assert wrapped and "not json" in wrapped[0]["data"]["body"]


async def test_bulk_redelivery_keeps_each_keys_order(db, daprd_factory, kafka, tmp_path):
    """Through a real daprd with bulk subscribe: an event that fails once is redelivered, and the
    later events of its task are applied only after it; other tasks are not held up."""
    import uvicorn
    from confluent_kafka import Producer
    from fastapi import FastAPI
    from testbed.core import free_port
    from testbed.daprd import kafka_pubsub_component
    from testbed.platform import RESILIENCY
    from todo.common.consumer import subscribe

    topic = f"bulk-order-{uuid.uuid4().hex[:8]}"
    applied: list[tuple[str, int]] = []
    attempts: dict[str, int] = {}

    async def record(session, event) -> None:
        attempts[event.id] = attempts.get(event.id, 0) + 1
        # Two failures: the delivery's all-in-one transaction fails, then the one-by-one pass fails
        # too, so the event is answered RETRY and Dapr must redeliver it.
        if event.data["fail_first"] and attempts[event.id] <= 2:
            raise RuntimeError("transient failure")
        session.add(Effect(subject=f"{event.subject}:{event.data['version']}"))
        applied.append((event.subject, event.data["version"]))

    app = FastAPI()
    app.state.db, app.state.dapr = db, DaprClient("http://127.0.0.1:9")
    subscribe(app, topic, record, processed=ProcessedEvent, source="/todo/test")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        # uvicorn offers no event to wait on
        await eventually_async(lambda: server.started, "uvicorn serving", within=30, interval=0.05)
        # All six events wait in Kafka before the sidecar starts, so they come in one bulk per
        # partition: task A's later events are in the same delivery as the one that fails.
        producer = Producer(kafka.client_config("plaintext"))
        for version in (1, 2, 3):  # task A's first event fails once; task B's never do
            for task, fail_first in (("task-a", version == 1), ("task-b", False)):
                event = build_event(
                    "com.todo.task.updated", "/test", task, {"version": version, "fail_first": fail_first}
                )
                producer.produce(topic, key=task, value=orjson.dumps(event))
        assert producer.flush(30) == 0
        (tmp_path / "pubsub.yaml").write_text(
            kafka_pubsub_component(kafka.plaintext, consumer_group=topic, initial_offset="oldest")
        )
        (tmp_path / "resiliency.yaml").write_text(RESILIENCY)
        await asyncio.to_thread(daprd_factory, f"bulk-{topic}", port, tmp_path)

        def all_six_applied() -> bool:
            assert len(applied) >= 6, f"applied so far: {applied}"
            return True

        await eventually_async(all_six_applied, "the six events applied", within=60, interval=0.2)
    finally:
        server.should_exit = True
        await serving
    assert [v for task, v in applied if task == "task-a"] == [1, 2, 3]
    assert [v for task, v in applied if task == "task-b"] == [1, 2, 3]
    assert sorted(attempts.values())[:5] == [1, 1, 1, 1, 1], "the other events were handled once"
    assert max(attempts.values()) == 3, "the failing event was redelivered by Dapr"
    assert await _count(db, Effect, subject="task-a:1") == 1
