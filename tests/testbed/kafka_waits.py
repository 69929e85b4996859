"""Waiting on Kafka from tests: an event reaching a (dead-letter) topic, a consumer group catching up.

A consumer group that has committed the end of a topic has handled everything published there so
far, and a restart can redeliver none of it: the positive signal tests wait for instead of sleeping
"long enough for a duplicate to show".
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from testbed.polling import eventually


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The offset the next message of each partition of ``topic`` will get."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ends-{uuid.uuid4().hex}"})
    try:
        partitions = reader.list_topics(topic, timeout=30).topics[topic].partitions
        return {p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
    finally:
        reader.close()


def uncommitted(bootstrap: str, group: str, topic: str, ends: dict[int, int] | None = None) -> dict[int, int]:
    """Per partition, how many messages before ``ends`` (default: the topic's end now) ``group`` has
    not committed; partitions it is done with are left out."""
    ends = end_offsets(bootstrap, topic) if ends is None else ends
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in ends])]
    # The client must outlive the future: once it is collected, the future never completes.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    result = admin.list_consumer_group_offsets(request, request_timeout=30)[group].result(timeout=60)
    # a partition never committed (offset -1001) counts from 0
    committed = {tp.partition: max(tp.offset, 0) for tp in result.topic_partitions}
    return {p: end - committed.get(p, 0) for p, end in ends.items() if committed.get(p, 0) < end}


def wait_committed(
    bootstrap: str, group: str, topic: str, ends: dict[int, int] | None = None, within: float = 120
) -> None:
    """Until ``group`` has committed ``topic`` up to ``ends`` (default: its end now) on every partition."""
    ends = end_offsets(bootstrap, topic) if ends is None else ends

    def caught_up() -> bool:
        behind = uncommitted(bootstrap, group, topic, ends)
        assert not behind, f"{group} is behind on {topic} by {behind} messages per partition"
        return True

    eventually(caught_up, f"{group} consuming {topic} up to {ends}", within=within, interval=0.5)


def wait_for_event(bootstrap: str, topic: str, event_id: str, within: float = 120) -> dict[str, Any]:
    """The CloudEvent ``event_id`` once it is on ``topic`` (read from the beginning)."""
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"wait-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    reader.subscribe([topic])

    def arrived() -> dict[str, Any]:
        msg = reader.poll(1.0)
        assert msg is not None, f"nothing new on {topic}"
        assert not msg.error(), msg.error()
        event = orjson.loads(msg.value())
        assert event.get("id") == event_id, f"read event {event.get('id')}, not the awaited one"
        return event

    try:
        return eventually(arrived, f"event {event_id} on {topic}", within=within, interval=0)
    finally:
        reader.close()
