"""dead-letters.yml (todo.platform.kafka_dlq) against the test bed's real Kafka and the real audit
consumer behind its own daprd: a poison event the consumer dead-lettered is listed with its reason;
selected events are replayed to task-events once, and an event replayed twice, or replayed after it
had been applied, is recorded once."""

from __future__ import annotations

import json
import os
import uuid

import httpx
import orjson
import pytest
from confluent_kafka import Producer
from runbook_support import output_of, run_runbook, write_inventory
from testbed.kafka_waits import end_offsets, wait_committed, wait_for_event
from testbed.platform import task_event, task_snapshot, token_for
from testbed.polling import eventually

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

TOPIC, DLQ = "task-events", "task-events-dlq"
CE_HEADERS = {"content-type": "application/cloudevents+json"}


def produce(kafka, topic: str, event: dict) -> None:
    producer = Producer({"bootstrap.servers": kafka.plaintext})
    producer.produce(topic, key=event["subject"], value=orjson.dumps(event), headers=CE_HEADERS)
    assert producer.flush(30) == 0


def audit_trail(platform, user) -> list[dict]:
    r = httpx.get(
        f"{platform.urls['audit']}/api/audit",
        params={"limit": 500},
        headers={"Authorization": f"Bearer {token_for(user)}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()["items"]


def wait_trail(platform, user, event_id: str, timeout: float = 120) -> list[dict]:
    def trail_with_event() -> list[dict]:
        items = audit_trail(platform, user)
        assert any(item["event_id"] == event_id for item in items), f"{len(items)} items, not the event"
        return items

    return eventually(trail_with_event, f"event {event_id} in the audit trail", within=timeout, interval=0.5)


@pytest.fixture
def inventory(tmp_path, kafka):
    return write_inventory(
        tmp_path / "inv",
        {
            "kafka_provider": "external",
            "kafka_external": {"bootstrap_servers": [kafka.plaintext]},
        },
    )


def dlq_report(result) -> list[dict]:
    """The messages the runbook read from task-events-dlq (its run under the json callback)."""
    assert result.returncode == 0, output_of(result)
    tasks = json.loads(result.stdout)["plays"][0]["tasks"]
    read = next(t for t in tasks if t["task"]["name"] == "Read the dead-letter topics")
    per_topic = read["hosts"]["todo-test"]["results"]
    return next(r for r in per_topic if r["dlq_topic"] == DLQ)["messages"]


def test_lists_and_replays_dead_letters_once(todo_platform, kafka, inventory):
    platform = todo_platform
    user = uuid.uuid4()
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json")

    # 1. A real poison event: the audit consumer moves it to the DLQ with its reason.
    poison = task_event("created", task_snapshot(user) | {"user_id": "not-a-uuid"})
    produce(kafka, TOPIC, poison)
    wait_for_event(kafka.plaintext, DLQ, poison["id"])

    # 2. An event the consumer dead-lettered while a dependency was broken (as it writes them) and
    #    one the sidecar dead-lettered after its retries although it had been applied.
    lost = task_event("created", task_snapshot(user, title="Lost while broken"))
    produce(kafka, DLQ, lost | {"deadletterreason": "simulated outage: the database refused connections"})
    applied = task_event("created", task_snapshot(user, title="Applied before"))
    produce(kafka, TOPIC, applied)
    wait_trail(platform, user, applied["id"])
    produce(kafka, DLQ, applied)

    listed = run_runbook("dead-letters", inventory, env=env)
    messages = {m["event_id"]: m for m in dlq_report(listed)}
    assert "user_id" in messages[poison["id"]]["reason"]
    assert messages[poison["id"]]["dead_lettered_by"] == "consumer"
    assert messages[lost["id"]]["reason"].startswith("simulated outage")
    assert messages[applied["id"]]["dead_lettered_by"] == "dapr"

    replay_args = [
        "-e",
        "dlq_replay_topic=task-events",
        "-e",
        json.dumps({"dlq_replay_event_ids": [lost["id"], applied["id"]]}),
    ]
    # --check publishes nothing
    before = end_offsets(kafka.plaintext, TOPIC)
    checked = run_runbook("dead-letters", inventory, *replay_args, "--check")
    assert checked.returncode == 0, output_of(checked)
    assert end_offsets(kafka.plaintext, TOPIC) == before

    for _ in range(2):  # the second replay must change nothing in the consumer
        result = run_runbook("dead-letters", inventory, *replay_args)
        assert result.returncode == 0, output_of(result)
        ends = end_offsets(kafka.plaintext, TOPIC)
        assert sum(ends.values()) == sum(before.values()) + 2  # each selected event published once
        before = ends
        wait_committed(kafka.plaintext, "audit", TOPIC, ends)
        items = audit_trail(platform, user)
        assert [i["event_id"] for i in items].count(lost["id"]) == 1
        assert [i["event_id"] for i in items].count(applied["id"]) == 1
    assert next(i for i in items if i["event_id"] == lost["id"])["data"]["title"] == "Lost while broken"

    # Bad selections: nothing is published, and the failure says what to fix.
    unknown = str(uuid.uuid4())
    result = run_runbook(
        "dead-letters",
        inventory,
        "-e",
        "dlq_replay_topic=task-events",
        "-e",
        json.dumps({"dlq_replay_event_ids": [unknown]}),
    )
    assert result.returncode != 0
    assert f"not in {DLQ}: {unknown}" in result.stdout and "Traceback" not in result.stdout + result.stderr
    result = run_runbook("dead-letters", inventory, "-e", "dlq_replay_topic=task-events")
    assert result.returncode != 0 and "dlq_replay_event_ids" in result.stdout
    assert end_offsets(kafka.plaintext, TOPIC) == before
