"""A poison message on task-events ends up on task-events-dlq, through the real daprd and Kafka."""

import time
import uuid

import orjson
import pytest
from testbed.platform import task_event, task_snapshot

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


def test_poison_event_is_moved_to_the_dead_letter_topic(todo_platform, kafka):
    from confluent_kafka import Consumer, Producer

    poison = task_event("created", task_snapshot(uuid.uuid4()) | {"user_id": "not-a-uuid"})
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.plaintext,
            "group.id": f"dlq-check-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(["task-events-dlq"])
    producer = Producer({"bootstrap.servers": kafka.plaintext})
    producer.produce(
        "task-events",
        key=poison["subject"],
        value=orjson.dumps(poison),
        headers={"content-type": "application/cloudevents+json"},
    )
    producer.flush(30)
    found = None
    deadline = time.monotonic() + 90
    try:
        while found is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            body = orjson.loads(msg.value())
            if body.get("id") == poison["id"]:
                found = body
    finally:
        consumer.close()
    assert found is not None, "the poison event never reached task-events-dlq"
    assert "user_id" in found["deadletterreason"]
    assert found["data"]["user_id"] == "not-a-uuid"  # the original payload is kept for inspection
