#!/usr/bin/python
# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: kafka_dlq
short_description: List the messages of a dead-letter topic and replay selected ones
version_added: 0.1.0
author:
  - Todo Platform developers (@todo-platform)
description:
  - Reads every message of the dead-letter topic of O(topic) (C(<topic>-dlq)) without committing
    offsets and reports, per message, the CloudEvent id, type and subject, who dead-lettered it
    (the consumer, with its reason, or the Dapr sidecar after its retries) and whether it can be
    replayed.
  - With O(replay=true) publishes the selected events once more to O(topic), keyed by their
    subject like the backend's publisher, without the C(deadletterreason) the consumer added. An
    event dead-lettered several times is published once. The consumers record processed event ids
    in the same transaction as their effect, so an event that was already applied is recorded as a
    duplicate and not applied twice.
  - The DLQ is left as it is (Kafka topics are append-only; its retention removes old messages).
    Bodies the consumer could not parse as a CloudEvent are listed but never replayed.
extends_documentation_fragment:
  - todo.platform.kafka_connection
attributes:
  check_mode:
    support: full
    description: Lists, and reports what a replay would publish, publishing nothing.
  diff_mode:
    support: none
    description: A replay appends to a topic; there is no state to compare.
options:
  topic:
    description:
      - The topic the events came from, for example V(task-events) or V(reminders).
    type: str
    required: true
  dlq_topic:
    description:
      - The dead-letter topic. Defaults to O(topic) followed by C(-dlq), the name the services use.
    type: str
  replay:
    description:
      - Publish the events selected by O(event_ids) (or every replayable one with O(replay_all)) to O(topic).
    type: bool
    default: false
  event_ids:
    description:
      - CloudEvent ids to replay. Each must be in the DLQ and replayable, else nothing is published
        and the module says which ids are missing or why they cannot be replayed.
    type: list
    elements: str
    default: []
  replay_all:
    description:
      - With O(replay=true), replay every replayable event of the DLQ (unparseable bodies are skipped
        and reported in RV(not_replayed)).
    type: bool
    default: false
  max_messages:
    description:
      - List at most this many messages (the newest); RV(truncated) says when there were more.
        Counts and replay selection always cover the whole topic.
    type: int
    default: 200
seealso:
  - module: todo.platform.kafka_consumer_lag_info
"""

EXAMPLES = r"""
- name: List what sits in task-events-dlq
  todo.platform.kafka_dlq:
    bootstrap_servers: [kafka.example.net:9092]
    topic: task-events
  register: dlq

- name: Replay two events after fixing their cause
  todo.platform.kafka_dlq:
    bootstrap_servers: [kafka.example.net:9092]
    topic: task-events
    replay: true
    event_ids:
      - 0b5f6c1e-3d1a-4c7e-9a59-0b8f3f0c2d11
      - 6a2e8d7c-5b4f-4e1a-8c3d-2f1e0d9c8b7a
"""

RETURN = r"""
dlq_topic:
  description: The dead-letter topic read.
  returned: always
  type: str
  sample: task-events-dlq
count:
  description: Number of messages in the dead-letter topic.
  returned: always
  type: int
  sample: 3
counts_by_reason:
  description: Number of messages per reason.
  returned: always
  type: dict
messages:
  description:
    - The newest O(max_messages) messages, oldest first, each with C(partition), C(offset),
      C(timestamp) (ms since the epoch), C(key), C(event_id), C(event_type), C(subject),
      C(dead_lettered_by) (V(consumer), V(dapr) or V(unknown)), C(reason), C(replayable) and
      C(not_replayable_because).
  returned: always
  type: list
  elements: dict
truncated:
  description: Whether the topic holds more messages than RV(messages) lists.
  returned: always
  type: bool
replayed:
  description: Event ids published to O(topic) (in check mode, the ids that would be).
  returned: always
  type: list
  elements: str
not_replayed:
  description: With O(replay_all), the messages skipped and why (C(message) id or partition/offset, C(why)).
  returned: always
  type: list
  elements: dict
"""

import time

from ansible_collections.todo.platform.plugins.module_utils.kafka import (
    HAS_CONFLUENT_KAFKA,
    KafkaFailure,
    connect,
    kafka_module,
    run_kafka_module,
)
from ansible_collections.todo.platform.plugins.module_utils.kafka_dlq import (
    describe_message,
    dlq_topic_of,
    replay_payload,
    select_for_replay,
)
from ansible_collections.todo.platform.plugins.module_utils.providers import SettingError

if HAS_CONFLUENT_KAFKA:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

CONTENT_TYPE = "application/cloudevents+json"


def read_dlq(conn, md, dlq):
    """Every message of the DLQ, oldest first per partition: (entry, raw value) pairs."""
    if dlq not in md.topics or md.topics[dlq].error is not None:
        return []
    partitions = sorted(md.topics[dlq].partitions)
    consumer = Consumer(conn.consumer_config("todo.platform.kafka_dlq"))
    try:
        ends = {}
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(dlq, partition), timeout=conn.timeout)
            if high > low:
                ends[partition] = high
        if not ends:
            return []
        consumer.assign([TopicPartition(dlq, p, OFFSET_BEGINNING) for p in ends])
        found = []
        deadline = time.monotonic() + conn.timeout * 3
        done = set()
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                raise KafkaFailure(
                    "timeout",
                    f"reading {dlq} did not reach its end in {conn.timeout * 3} s; raise request_timeout",
                )
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                raise KafkaFailure("unknown", f"reading {dlq}: {msg.error().str()}")
            entry = describe_message(
                msg.value(), msg.key(), msg.partition(), msg.offset(), msg.timestamp()[1]
            )
            found.append((entry, msg.value()))
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
        return found
    finally:
        consumer.close()


def publish(conn, topic, chosen):
    conf = dict(conn.conf)
    conf.pop("error_cb", None)
    conf.pop("logger", None)
    # One copy per event even when librdkafka retries a send.
    conf.update({"enable.idempotence": True, "acks": "all"})
    producer = Producer(conf)
    failures = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(err.str())

    for entry, value in chosen:
        producer.produce(
            topic,
            value=replay_payload(value),
            key=entry["subject"] or entry["key"],
            headers={"content-type": CONTENT_TYPE},
            on_delivery=delivered,
        )
    remaining = producer.flush(conn.timeout * 3)
    if remaining or failures:
        raise KafkaFailure(
            "unknown",
            "replay to {} incomplete ({} not confirmed): {}".format(
                topic, remaining, "; ".join(failures) or "delivery timed out"
            ),
        )


def run(module):
    p = module.params
    if p["replay"] and not p["event_ids"] and not p["replay_all"]:
        raise SettingError("event_ids", "replay needs the event ids to replay, or replay_all: true")
    if p["event_ids"] and p["replay_all"]:
        raise SettingError("replay_all", "give either event_ids or replay_all, not both")
    if p["max_messages"] < 0:
        raise SettingError("max_messages", "must be 0 or more")
    dlq = dlq_topic_of(p["topic"], p["dlq_topic"])
    conn, md = connect(p, client_id="todo.platform.kafka_dlq")
    if p["replay"] and (p["topic"] not in md.topics or md.topics[p["topic"]].error is not None):
        raise SettingError("topic", "topic {} does not exist or is not readable".format(p["topic"]))
    found = read_dlq(conn, md, dlq)
    entries = [entry for entry, _value in found]
    counts = {}
    for entry in entries:
        counts[entry["reason"]] = counts.get(entry["reason"], 0) + 1
    shown = sorted(entries, key=lambda e: (e["timestamp"] or 0, e["partition"], e["offset"]))
    result = dict(
        changed=False,
        dlq_topic=dlq,
        count=len(entries),
        counts_by_reason=counts,
        messages=shown[-p["max_messages"] :] if p["max_messages"] else [],
        truncated=len(shown) > p["max_messages"],
        replayed=[],
        not_replayed=[],
    )
    if not p["replay"]:
        return result
    chosen, missing, refused = select_for_replay(entries, set(p["event_ids"]), p["replay_all"])
    if not p["replay_all"] and (missing or refused):
        problems = ["not in {}: {}".format(dlq, ", ".join(missing))] if missing else []
        problems += [f"{i} cannot be replayed: {why}" for i, why in refused.items()]
        raise SettingError("event_ids", "; ".join(problems) + "; nothing was replayed")
    values = {(e["partition"], e["offset"]): v for e, v in found}
    pairs = [(e, values[(e["partition"], e["offset"])]) for e in chosen]
    if pairs and not module.check_mode:
        publish(conn, p["topic"], pairs)
    result.update(
        changed=bool(pairs),
        replayed=[e["event_id"] for e in chosen],
        not_replayed=[{"message": i, "why": why} for i, why in refused.items()],
    )
    return result


def main():
    module = kafka_module(
        topic=dict(type="str", required=True),
        dlq_topic=dict(type="str"),
        replay=dict(type="bool", default=False),
        event_ids=dict(type="list", elements="str", default=[]),
        replay_all=dict(type="bool", default=False),
        max_messages=dict(type="int", default=200),
    )
    result = run_kafka_module(module, "kafka_dlq", run)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
