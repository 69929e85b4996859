"""Task events end to end: backend -> outbox -> daprd (real sidecar) -> Kafka, read with a Kafka consumer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict

import asyncpg
import orjson
import pytest
from backend_support import make_settings, register_user, running_app
from confluent_kafka import Consumer

pytestmark = pytest.mark.testbed

DAPR_TOKEN = "test-dapr-api-token-abcdef"


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
        self.consumer = Consumer(
            {
                **kafka.client_config("plaintext"),
                "group.id": f"test-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe(["task-events"])
        self.messages: list[tuple[bytes | None, dict]] = []

    def _poll_until(self, predicate, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            msg = self.consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            self.messages.append((msg.key(), orjson.loads(msg.value())))

    async def collect(
        self, subjects: set[str], count: int, wait_s: float = 120.0
    ) -> list[tuple[bytes, dict]]:
        """Wait until ``count`` events about ``subjects`` arrived (or ``wait_s`` passed), then drain a bit."""

        def mine() -> list[tuple[bytes, dict]]:
            return [(k, e) for k, e in self.messages if e.get("subject") in subjects]

        await asyncio.to_thread(self._poll_until, lambda: len(mine()) >= count, wait_s)
        # a short extra read so that duplicates arriving right after would be seen
        await asyncio.to_thread(self._poll_until, lambda: False, 3.0)
        return mine()

    def close(self) -> None:
        self.consumer.close()


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


async def test_events_reach_kafka_with_envelope_and_order(evented, reader):
    client = evented
    u = await register_user(client)
    h = u.headers
    t = (await client.post("/api/tasks", json={"title": "publish me", "tags": ["x"]}, headers=h)).json()
    await client.patch(f"/api/tasks/{t['id']}", json={"priority": "high"}, headers=h)
    await client.post(f"/api/tasks/{t['id']}/complete", headers=h)
    await client.delete(f"/api/tasks/{t['id']}", headers=h)

    got = await reader.collect({t["id"]}, 4)
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
    got = await reader.collect(subjects, 100, wait_s=180.0)
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
