"""Task events end to end: backend -> outbox -> daprd (real sidecar) -> Kafka, read with a Kafka consumer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections import defaultdict
from pathlib import Path

import asyncpg
import orjson
import psycopg
import pytest
from backend_support import make_settings, register_user, running_app
from confluent_kafka import Consumer, TopicPartition
from testbed.kafka_waits import end_offsets
from testbed.polling import eventually
from testbed.postgres import Postgres
from todo.common.migrations import upgrade_async

pytestmark = pytest.mark.testbed

DAPR_TOKEN = "test-dapr-api-token-abcdef"
TOPIC = "task-events"


@pytest.fixture(scope="module")
def sidecar(daprd_factory, kafka, tmp_path_factory):
    from testbed.daprd import kafka_pubsub_component

    resources = tmp_path_factory.mktemp("backend-dapr")
    (resources / "pubsub.yaml").write_text(
        kafka_pubsub_component(kafka.plaintext, consumer_group="backend", initial_offset="oldest")
    )
    return daprd_factory("backend", None, resources, api_token=DAPR_TOKEN)


@pytest.fixture(scope="module")
async def evented(backend_dsn, sidecar):
    """The backend with its outbox relay publishing through the sidecar."""
    settings = make_settings(
        backend_dsn, outbox_relay=True, dapr_http_port=sidecar.http_port, dapr_api_token=DAPR_TOKEN
    )
    async with running_app(settings) as c:
        yield c


class TopicReader:
    """Reads task-events from the beginning with a fresh consumer group."""

    def __init__(self, kafka) -> None:
        self.bootstrap = kafka.plaintext
        self.consumer = Consumer(
            {
                **kafka.client_config("plaintext"),
                "group.id": f"test-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe([TOPIC])
        self.messages: list[tuple[bytes | None, dict]] = []

    def _read_until(self, check, what: str, within: float) -> None:
        def read_one_then_check():
            msg = self.consumer.poll(0.5)
            if msg is not None and not msg.error():
                self.messages.append((msg.key(), orjson.loads(msg.value())))
            return check()

        eventually(read_one_then_check, what, within=within, interval=0)

    def _read_to_the_end(self, within: float) -> None:
        ends = end_offsets(self.bootstrap, TOPIC)

        def at_the_end() -> bool:
            positions = self.consumer.position([TopicPartition(TOPIC, p) for p in ends])
            behind = {tp.partition: ends[tp.partition] - max(tp.offset, 0) for tp in positions}
            assert not any(n > 0 for n in behind.values()), f"messages left per partition: {behind}"
            return True

        self._read_until(at_the_end, f"{TOPIC} read up to {ends}", within)

    async def collect(
        self, subjects: set[str], count: int, outbox_dsn: str, wait_s: float = 120.0
    ) -> list[tuple[bytes, dict]]:
        """The events about ``subjects`` once ``count`` of them arrived and the relay has marked every
        outbox row of ``subjects`` sent: it publishes again only what it has not marked, so after
        reading the topic to its end then, no duplicate can still come."""

        def mine() -> list[tuple[bytes, dict]]:
            return [(k, e) for k, e in self.messages if e.get("subject") in subjects]

        def enough() -> bool:
            assert len(mine()) >= count, f"{len(mine())} of {count} events"
            return True

        await asyncio.to_thread(self._read_until, enough, f"{count} events on {TOPIC}", wait_s)
        await asyncio.to_thread(
            eventually, lambda: _all_marked_sent(outbox_dsn, subjects), "outbox rows sent"
        )
        await asyncio.to_thread(self._read_to_the_end, 60)
        return mine()

    def close(self) -> None:
        self.consumer.close()


def _all_marked_sent(dsn: str, subjects: set[str]) -> bool:
    with psycopg.connect(dsn) as conn:
        (unsent,) = conn.execute(
            "SELECT count(*) FROM backend.outbox WHERE sent_at IS NULL AND partition_key = ANY(%s)",
            (list(subjects),),
        ).fetchone()
    assert unsent == 0, f"{unsent} outbox rows not marked sent"
    return True


@pytest.fixture
def reader(kafka):
    r = TopicReader(kafka)
    yield r
    r.close()


def _assert_in_version_order(events: list[dict]) -> None:
    by_task: dict[str, list[int]] = defaultdict(list)
    for e in events:
        by_task[e["subject"]].append(e["data"]["version"])
    for subject, versions in by_task.items():
        assert versions == sorted(versions), (subject, versions)
        assert versions == list(range(1, len(versions) + 1)), (subject, versions)


async def test_events_reach_kafka_with_envelope_and_order(evented, reader, backend_dsn):
    client = evented
    u = await register_user(client)
    h = u.headers
    t = (await client.post("/api/tasks", json={"title": "publish me", "tags": ["x"]}, headers=h)).json()
    await client.patch(f"/api/tasks/{t['id']}", json={"priority": "high"}, headers=h)
    await client.post(f"/api/tasks/{t['id']}/complete", headers=h)
    await client.delete(f"/api/tasks/{t['id']}", headers=h)

    got = await reader.collect({t["id"]}, 4, backend_dsn)
    assert len(got) == 4
    keys = {k for k, _ in got}
    assert keys == {t["id"].encode()}, "the partition key is the task id"
    events = [e for _, e in got]
    assert [e["type"] for e in events] == [
        "com.todo.task.created",
        "com.todo.task.updated",
        "com.todo.task.completed",
        "com.todo.task.deleted",
    ]
    _assert_in_version_order(events)
    for e in events:
        assert e["specversion"] == "1.0"
        assert e["source"] == "/todo/backend"
        assert e["subject"] == t["id"]
        assert e["datacontenttype"] == "application/json"
        uuid.UUID(e["id"])
        assert e["data"]["id"] == t["id"] and e["data"]["user_id"] == str(u.id)
        assert e["data"]["title"] == "publish me" and e["data"]["tags"] == ["x"]
        assert isinstance(e["data"]["changed_fields"], list)
    assert events[1]["data"]["priority"] == "high" and "priority" in events[1]["data"]["changed_fields"]
    assert events[2]["data"]["status"] == "completed"
    assert len({e["id"] for e in events}) == 4


@pytest.mark.slow  # a fault test: stops the shared Kafka for a while
async def test_events_wait_while_kafka_is_down_and_all_arrive_once(evented, reader, kafka, backend_dsn):
    client = evented
    u = await register_user(client)
    h = u.headers
    kafka.stop()
    try:
        subjects: set[str] = set()
        for i in range(10):  # 10 tasks x (1 create + 9 updates) = 100 changes, all while Kafka is down
            r = await client.post("/api/tasks", json={"title": f"offline {i}"}, headers=h)
            assert r.status_code == 201, "writes succeed while Kafka is down"
            task_id = r.json()["id"]
            subjects.add(task_id)
            for j in range(9):
                r = await client.patch(f"/api/tasks/{task_id}", json={"description": f"v{j}"}, headers=h)
                assert r.status_code == 200
        # nothing can have been published: all 100 events wait in the outbox
        conn = await asyncpg.connect(backend_dsn)
        try:
            unsent = await conn.fetchval(
                "SELECT count(*) FROM backend.outbox"
                " WHERE sent_at IS NULL AND partition_key = ANY($1::text[])",
                list(subjects),
            )
        finally:
            await conn.close()
        assert unsent == 100
    finally:
        kafka.start()
    got = await reader.collect(subjects, 100, backend_dsn, wait_s=180.0)
    events = [e for _, e in got]
    ids = [e["id"] for e in events]
    assert len(set(ids)) == 100, f"{len(set(ids))} distinct events of 100 arrived"
    assert len(ids) == 100, f"{len(ids) - len(set(ids))} events arrived twice"
    _assert_in_version_order(events)
    failed = [
        line
        for line in (await client.get("/metrics")).text.splitlines()
        if line.startswith('todo_events_publish_failed_total{topic="task-events"')
    ]
    assert failed and float(failed[0].split()[-1]) > 0, "failed publish attempts are counted"


@pytest.mark.slow  # about half a minute: 500 changes through the real sidecar beside a stuck key
async def test_a_stuck_key_does_not_hold_up_the_other_keys(evented, reader, backend_dsn):
    """Issue 17 item 6: one key whose oldest event the broker refuses (larger than Kafka's message
    limit) and 250 events of that key behind it, written before 500 changes to other tasks; every
    one of the 500 arrives, and the stuck key's events stay queued, in order, with their attempts."""
    client = evented
    stuck_key = f"stuck-{uuid.uuid4()}"
    conn = await asyncpg.connect(backend_dsn)

    def event(size: int) -> str:
        return orjson.dumps(
            {
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "source": "/todo/test",
                "type": "com.todo.task.updated",
                "subject": stuck_key,
                "datacontenttype": "application/json",
                "data": {"padding": "x" * size},
            }
        ).decode()

    try:
        # the first event is over a MB (Kafka's producer refuses it); the rest of the key waits behind it
        payloads = [event(1_500_000)] + [event(10) for _ in range(249)]
        await conn.executemany(
            "INSERT INTO backend.outbox (event_id, topic, event_type, partition_key, payload)"
            " VALUES (($1::jsonb->>'id')::uuid, 'task-events', 'com.todo.task.updated', $2, $1::jsonb)",
            [(p, stuck_key) for p in payloads],
        )
        h = (await register_user(client)).headers

        async def changes(i: int) -> str:  # 1 create + 9 updates
            r = await client.post("/api/tasks", json={"title": f"healthy {i}"}, headers=h)
            assert r.status_code == 201, r.text
            task_id = r.json()["id"]
            for j in range(9):
                r = await client.patch(f"/api/tasks/{task_id}", json={"description": f"v{j}"}, headers=h)
                assert r.status_code == 200, r.text
            return task_id

        # as many at once as the pool has connections: more would wait for one, and past
        # DB_POOL_TIMEOUT_SECONDS be answered 503 on a busy machine
        slots = asyncio.Semaphore(8)

        async def bounded(i: int) -> str:
            async with slots:
                return await changes(i)

        subjects = set(await asyncio.gather(*(bounded(i) for i in range(50))))
        got = await reader.collect(subjects, 500, backend_dsn, wait_s=120.0)
        events = [e for _, e in got]
        arrived = len({e["id"] for e in events})
        assert arrived == 500, f"{arrived} of 500 events arrived"
        _assert_in_version_order(events)
        head = await conn.fetchrow(
            "SELECT attempts, last_error FROM backend.outbox WHERE partition_key = $1 ORDER BY seq LIMIT 1",
            stuck_key,
        )
        assert head["attempts"] >= 1 and head["last_error"], "the failing event's attempts are recorded"
        sent = await conn.fetchval(
            "SELECT count(*) FROM backend.outbox WHERE partition_key = $1 AND sent_at IS NOT NULL", stuck_key
        )
        assert sent == 0, "nothing of the stuck key overtakes its failing event"
    finally:
        await conn.execute("DELETE FROM backend.outbox WHERE partition_key = $1", stuck_key)
        await conn.close()


class PrivatePostgres(Postgres):
    """A PostgreSQL of this test alone (its own data directory and port): it gets frozen."""

    name = "postgres-frozen"


@pytest.fixture(scope="module")
def private_pg(testbed_run):
    comp = PrivatePostgres(testbed_run)
    comp.start()
    yield comp
    comp.destroy()


def _signal_postgres(pg: Postgres, sig: signal.Signals) -> None:
    """``sig`` to this PostgreSQL's postmaster and each of its children (every backend calls
    setsid(), so the postmaster's process group holds only the postmaster)."""
    postmaster = pg.procs[0].pid
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster:  # the field after the state is the parent's pid
                children.append(int(stat.parent.name))
    for pid in [postmaster, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@pytest.mark.slow  # about a minute: PostgreSQL frozen for the command timeout and more, under load
async def test_a_frozen_database_answers_503_fast_and_loses_nothing(private_pg, sidecar, reader):
    """Issue 17 item 7: SIGSTOP of PostgreSQL (no reset, the sockets stay open) under load.
    Requests end with 503 while it is frozen (the command, statement and pool timeouts), the relay
    drops its lock connection and takes the lock again when PostgreSQL returns, and every task that
    was committed has its event on Kafka."""
    dsn = private_pg.create_database("backend_frozen")
    await upgrade_async("backend", dsn)
    settings = make_settings(
        dsn, outbox_relay=True, dapr_http_port=sidecar.http_port, dapr_api_token=DAPR_TOKEN, db_pool_size=4
    )
    async with running_app(settings) as client:
        h = (await register_user(client)).headers

        async def create(label: str) -> int:
            r = await client.post("/api/tasks", json={"title": label}, headers=h)
            assert r.status_code in (201, 503), r.text
            return r.status_code

        assert {await create(f"before {i}") for i in range(20)} == {201}
        _signal_postgres(private_pg, signal.SIGSTOP)
        try:
            # 12 writes and 4 reads at once, more than the pool holds: without the timeouts they hang
            # for the kernel's TCP timeout, so a generous bound turns a hang into a failure
            frozen = [create(f"frozen {i}") for i in range(12)] + [
                client.get("/api/tasks", headers=h) for _ in range(4)
            ]
            try:
                answers = await asyncio.wait_for(asyncio.gather(*frozen), timeout=90)
            except TimeoutError:
                pytest.fail("requests still hang after 90 s with PostgreSQL frozen")
            statuses = [a if isinstance(a, int) else a.status_code for a in answers]
            assert statuses == [503] * 16, statuses
            problem = await client.get("/api/tasks", headers=h)
            assert problem.status_code == 503 and problem.headers["retry-after"] == "1"
            assert problem.json()["type"].endswith("database-unavailable")
        finally:
            _signal_postgres(private_pg, signal.SIGCONT)
        # a connection the freeze broke may be handed out once more: the client retries a 503
        after = [await create(f"after {i}") for i in range(40)]
        assert after[-20:] == [201] * 20, after
        conn = await asyncpg.connect(dsn)
        try:
            committed = {str(r["id"]) for r in await conn.fetch("SELECT id FROM backend.tasks")}
        finally:
            await conn.close()
        assert len(committed) >= 40
        got = await reader.collect(committed, len(committed), dsn, wait_s=120.0)
        arrived = {e["subject"] for _, e in got if e["type"] == "com.todo.task.created"}
        assert arrived == committed, f"{len(committed - arrived)} committed tasks have no event on Kafka"
