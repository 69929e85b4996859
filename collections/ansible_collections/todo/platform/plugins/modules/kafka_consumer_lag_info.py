#!/usr/bin/python
# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: kafka_consumer_lag_info
short_description: Report Kafka consumer lag per group, topic and partition
version_added: 0.1.0
author:
  - Todo Platform developers (@todo-platform)
description:
  - Reads the committed offsets of consumer groups and the end offsets of their partitions and
    reports the lag (end offset minus committed offset) per partition, per topic, per group and
    in total.
  - A partition a group never committed counts everything still retained as lag.
extends_documentation_fragment:
  - todo.platform.kafka_connection
attributes:
  check_mode:
    support: full
    description: Read only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to compare.
options:
  groups:
    description:
      - Consumer groups to report. All groups the user can see when empty.
      - With Dapr's default C(consumerGroup) a group is named after the app-id (for example C(audit)).
    type: list
    elements: str
    default: []
  topics:
    description:
      - Only report these topics. Every partition of them is reported for each group named in
        O(groups) (or, without O(groups), each group that committed offsets on them), also the
        partitions the group never committed.
    type: list
    elements: str
    default: []
seealso:
  - module: todo.platform.kafka_probe
"""

EXAMPLES = r"""
- name: Read the lag of the audit and sync consumers on task-events
  todo.platform.kafka_consumer_lag_info:
    bootstrap_servers: [todo-kafka-kafka-bootstrap.kafka.svc:9092]
    groups: [audit, sync]
    topics: [task-events]
  register: lag

- name: Stop when consumers fell behind
  ansible.builtin.assert:
    that: lag.total_lag < 1000
    fail_msg: "consumers are {{ lag.total_lag }} messages behind"
"""

RETURN = r"""
total_lag:
  description: Sum of the lag of every reported partition.
  returned: always
  type: int
  sample: 42
groups:
  description: Lag per group.
  returned: always
  type: list
  elements: dict
  contains:
    group:
      description: Consumer group id.
      type: str
      returned: always
    state:
      description: Group state reported by the coordinator (for example STABLE or EMPTY).
      type: str
      returned: always
    lag:
      description: Lag of the group over the reported topics.
      type: int
      returned: always
    topics:
      description:
        - Per topic C(topic), C(lag) and C(partitions) (each C(partition), C(committed_offset),
          C(end_offset), C(lag)).
      type: list
      elements: dict
      returned: always
"""

from ansible_collections.todo.platform.plugins.module_utils.kafka import (
    HAS_CONFLUENT_KAFKA,
    connect,
    kafka_module,
    run_kafka_module,
)
from ansible_collections.todo.platform.plugins.module_utils.kafka_topics import lag_report
from ansible_collections.todo.platform.plugins.module_utils.providers import SettingError

if HAS_CONFLUENT_KAFKA:
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
    from confluent_kafka.admin import OffsetSpec


def _result(conn, future):
    try:
        return future.result()
    except KafkaException as e:
        raise conn.fail_from(e) from None


def collect(p):
    conn, md = connect(p, client_id="todo.platform.kafka_consumer_lag_info")
    t = conn.timeout
    groups = list(p["groups"])
    if not groups:
        listing = _result(conn, conn.admin.list_consumer_groups(request_timeout=t))
        groups = sorted(g.group_id for g in listing.valid)
    states = {}
    if groups:
        described = conn.admin.describe_consumer_groups(groups, request_timeout=t)
        for group, future in described.items():
            desc = _result(conn, future)
            states[group] = getattr(desc.state, "name", str(desc.state))
    for topic in p["topics"]:
        if topic not in md.topics or md.topics[topic].error is not None:
            raise SettingError("topics", f"topic {topic} does not exist or is not readable")
    wanted = set(p["topics"])
    group_offsets = {}
    for group in groups:
        request = [ConsumerGroupTopicPartitions(group)]
        futures = conn.admin.list_consumer_group_offsets(request, request_timeout=t)
        committed = {}
        for _group, future in futures.items():
            for tp in _result(conn, future).topic_partitions or []:
                if wanted and tp.topic not in wanted:
                    continue
                committed[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else None
        # Every partition of the asked topics, for the groups asked by name or consuming them.
        for topic in wanted:
            if p["groups"] or any(key[0] == topic for key in committed):
                for partition in md.topics[topic].partitions:
                    committed.setdefault((topic, partition), None)
        if not committed and not p["groups"]:
            continue
        group_offsets[group] = committed
    partitions = sorted({key for offsets in group_offsets.values() for key in offsets})
    end_offsets, start_offsets = {}, {}
    if partitions:
        for spec, target in ((OffsetSpec.latest(), end_offsets), (OffsetSpec.earliest(), start_offsets)):
            request = {TopicPartition(topic, partition): spec for topic, partition in partitions}
            for tp, future in conn.admin.list_offsets(request, request_timeout=t).items():
                target[(tp.topic, tp.partition)] = _result(conn, future).offset
    return lag_report(group_offsets, end_offsets, start_offsets, states)


def main():
    module = kafka_module(
        groups=dict(type="list", elements="str", default=[]),
        topics=dict(type="list", elements="str", default=[]),
    )
    report = run_kafka_module(module, "kafka_consumer_lag_info", lambda m: collect(m.params))
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()
