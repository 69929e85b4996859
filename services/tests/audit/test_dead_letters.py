"""A poison message on task-events ends up on task-events-dlq, through the real daprd and Kafka."""

import uuid

import orjson
import pytest
from testbed.kafka_waits import wait_for_event
from testbed.platform import task_event, task_snapshot

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


def test_poison_event_is_moved_to_the_dead_letter_topic(todo_platform, kafka):
    from confluent_kafka import Producer

    poison = task_event("created", task_snapshot(uuid.uuid4()) | {"user_id": "not-a-uuid"})
    producer = Producer({"bootstrap.servers": kafka.plaintext})
    producer.produce(
        "task-events",
        key=poison["subject"],
        value=orjson.dumps(poison),
        headers={"content-type": "application/cloudevents+json"},
    )
    producer.flush(30)
    found = wait_for_event(kafka.plaintext, "task-events-dlq", poison["id"], within=90)
    assert "user_id" in found["deadletterreason"]
    assert found["data"]["user_id"] == "not-a-uuid"  # the original payload is kept for inspection
