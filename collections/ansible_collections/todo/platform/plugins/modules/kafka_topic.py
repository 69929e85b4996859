#!/usr/bin/python
# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: kafka_topic
short_description: Ensure Kafka topics exist with the wanted partitions, replication and retention
version_added: 0.1.0
author:
  - Todo Platform developers (@todo-platform)
description:
  - Creates, grows, reconfigures or deletes Kafka topics through the Kafka admin API, over any
    listener (PLAINTEXT, TLS, SASL/SCRAM, SASL/PLAIN).
  - Idempotent; only the settings given are compared, other topic configs are left alone.
  - Refuses what cannot work, naming the setting, for example reducing partitions, changing the
    replication factor, changing a stream's partitions or retention on OCI Streaming after creation.
  - Azure Event Hubs does not support topic management through the Kafka admin API; create event
    hubs in Azure instead (M(azure.azcollection.azure_rm_eventhub)). With O(provider=azure_event_hubs)
    the module fails and says so.
extends_documentation_fragment:
  - todo.platform.kafka_connection
attributes:
  check_mode:
    support: full
    description: The brokers validate every change (C(validate_only)) but apply none.
  diff_mode:
    support: full
    description: Partitions, replication factor and the given configs before and after.
options:
  topics:
    description:
      - Topics to manage.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Topic name.
        type: str
        required: true
      partitions:
        description:
          - Number of partitions. Can only grow. The broker default when unset at creation.
        type: int
      replication_factor:
        description:
          - Replicas per partition, at creation only. The broker default when unset.
        type: int
      retention_ms:
        description:
          - C(retention.ms) of the topic; V(-1) keeps messages forever.
          - OCI Streaming accepts 24 hours to 7 days and only at creation.
        type: int
      config:
        description:
          - Other topic configs, for example C(cleanup.policy) or C(min.insync.replicas).
        type: dict
  state:
    description:
      - V(present) creates or updates the topics; V(absent) deletes them.
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: todo.platform.kafka_probe
  - module: todo.platform.dapr_kafka_pubsub
"""

EXAMPLES = r"""
- name: Ensure the Todo topics exist on the in-cluster Kafka (SCRAM)
  todo.platform.kafka_topic:
    bootstrap_servers: [todo-kafka-kafka-bootstrap.kafka.svc:9092]
    security_protocol: SASL_PLAINTEXT
    sasl_mechanism: SCRAM-SHA-512
    sasl_username: todo-admin
    sasl_password: "{{ vault_kafka_admin_password }}"
    topics:
      - {name: task-events, partitions: 6, replication_factor: 3, retention_ms: 604800000}
      - {name: reminders, partitions: 3, replication_factor: 3}
      - {name: task-events-dlq, partitions: 1, replication_factor: 3, config: {cleanup.policy: delete}}

- name: Ensure the streams exist on OCI Streaming
  todo.platform.kafka_topic:
    provider: oci_streaming
    bootstrap_servers: "{{ stream_pool.kafka_settings.bootstrap_servers }}"
    security_protocol: SASL_SSL
    sasl_mechanism: PLAIN
    sasl_username: "mytenancy/Default/todo-streaming/{{ stream_pool.id }}"
    sasl_password: "{{ vault_oci_auth_token }}"
    topics:
      - {name: task-events, partitions: 3, retention_ms: 86400000}

- name: Remove a topic
  todo.platform.kafka_topic:
    bootstrap_servers: [127.0.0.1:9092]
    topics: [{name: scratch}]
    state: absent
"""

RETURN = r"""
topics:
  description: The topics asked for, as the cluster has them after the run (or would have in check mode).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Topic name.
      type: str
      returned: always
    exists:
      description: Whether the topic exists.
      type: bool
      returned: always
    partitions:
      description: Number of partitions.
      type: int
      returned: when the topic exists
    replication_factor:
      description: Replicas per partition.
      type: int
      returned: when the topic exists
    config:
      description: The configs asked for, with their values.
      type: dict
      returned: when the topic exists
actions:
  description: The admin operations run (or that would run in check mode).
  returned: always
  type: list
  elements: dict
  sample:
    - op: create
      topic: task-events
      partitions: 6
      replication_factor: 3
      config: {retention.ms: "604800000"}
failure_class:
  description:
    - On a connection failure, its class (dns, tcp, tls, sasl_authentication, authorization,
      protocol, timeout, unknown).
  returned: on connection failure
  type: str
"""

import time

from ansible_collections.todo.platform.plugins.module_utils.kafka import (
    HAS_CONFLUENT_KAFKA,
    KafkaFailure,
    connect,
    kafka_module,
    run_kafka_module,
)
from ansible_collections.todo.platform.plugins.module_utils.kafka_topics import (
    EVENT_HUBS_TOPICS_MESSAGE,
    normalize_topics,
    plan,
)
from ansible_collections.todo.platform.plugins.module_utils.providers import SettingError

if HAS_CONFLUENT_KAFKA:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewPartitions,
        NewTopic,
    )

TOPIC_SPEC = dict(
    name=dict(type="str", required=True),
    partitions=dict(type="int"),
    replication_factor=dict(type="int"),
    retention_ms=dict(type="int"),
    config=dict(type="dict"),
)


def read_topics(conn, md, names, config_keys):
    """Current state of the named topics that exist."""
    current = {}
    present = [n for n in names if n in md.topics and md.topics[n].error is None]
    for name in names:
        t = md.topics.get(name)
        if t is not None and t.error is not None and t.error.code() != 3:  # 3: unknown topic
            raise KafkaFailure(
                "authorization" if "AUTHORIZATION" in t.error.name() else "unknown",
                f"topic {name}: {t.error.str()}",
            )
    if not present:
        return current
    resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in present]
    futures = conn.admin.describe_configs(resources, request_timeout=conn.timeout)
    for resource, future in futures.items():
        try:
            entries = future.result()
        except KafkaException as e:
            raise conn.fail_from(e) from None
        t = md.topics[resource.name]
        current[resource.name] = dict(
            partitions=len(t.partitions),
            replication_factor=max((len(p.replicas) for p in t.partitions.values()), default=0),
            config={k: entries[k].value for k in config_keys.get(resource.name, ()) if k in entries},
        )
    return current


def _wait(conn, futures, validate_only, what):
    for key, future in futures.items():
        try:
            future.result()
        except KafkaException as e:
            err = e.args[0] if e.args else None
            text = err.str() if hasattr(err, "str") else str(e)
            raise SettingError(
                "topics",
                "{} {} was refused by the brokers{}: {}".format(
                    what,
                    key if isinstance(key, str) else getattr(key, "name", key),
                    " (validate only)" if validate_only else "",
                    text,
                ),
            ) from None


def execute(conn, actions, check_mode):
    t = conn.timeout
    creates = [a for a in actions if a["op"] == "create"]
    if creates:
        new = [
            NewTopic(
                a["topic"],
                num_partitions=a["partitions"] if a["partitions"] is not None else -1,
                replication_factor=a["replication_factor"] if a["replication_factor"] is not None else -1,
                config=a["config"],
            )
            for a in creates
        ]
        _wait(
            conn,
            conn.admin.create_topics(new, validate_only=check_mode, operation_timeout=t, request_timeout=t),
            check_mode,
            "creating topic",
        )
    grows = [a for a in actions if a["op"] == "add_partitions"]
    if grows:
        parts = [NewPartitions(a["topic"], a["partitions"]) for a in grows]
        _wait(
            conn,
            conn.admin.create_partitions(
                parts, validate_only=check_mode, operation_timeout=t, request_timeout=t
            ),
            check_mode,
            "adding partitions to",
        )
    alters = [a for a in actions if a["op"] == "alter_config"]
    if alters:
        resources = [
            ConfigResource(
                ConfigResource.Type.TOPIC,
                a["topic"],
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                    for k, v in sorted(a["config"].items())
                ],
            )
            for a in alters
        ]
        _wait(
            conn,
            conn.admin.incremental_alter_configs(resources, validate_only=check_mode, request_timeout=t),
            check_mode,
            "changing the configs of",
        )
    deletes = [a["topic"] for a in actions if a["op"] == "delete"]
    if deletes and not check_mode:
        _wait(
            conn,
            conn.admin.delete_topics(deletes, operation_timeout=t, request_timeout=t),
            False,
            "deleting topic",
        )


def settled_metadata(conn, actions):
    """Metadata once the brokers show the changes (their metadata caches catch up a bit later)."""
    deadline = time.monotonic() + conn.timeout
    while True:
        md = conn.metadata()
        pending = []
        for a in actions:
            t = md.topics.get(a["topic"])
            exists = t is not None and t.error is None
            if a["op"] == "delete":
                if exists:
                    pending.append(a["topic"])
            elif not exists or a["op"] == "add_partitions" and len(t.partitions) < a["partitions"]:
                pending.append(a["topic"])
        if not pending or time.monotonic() >= deadline:
            return md
        time.sleep(0.5)


def topics_result(desired, current_after):
    out = []
    for t in desired:
        have = current_after.get(t["name"])
        entry = dict(name=t["name"], exists=have is not None)
        if have is not None:
            entry.update(have)
        out.append(entry)
    return out


def run(module):
    p = module.params
    if p["provider"] == "azure_event_hubs":
        module.fail_json(msg=EVENT_HUBS_TOPICS_MESSAGE, setting="provider")
    desired = normalize_topics(p["topics"], p["state"])
    conn, md = connect(p, client_id="todo.platform.kafka_topic")
    names = [t["name"] for t in desired]
    keys = {t["name"]: sorted(t["config"]) for t in desired}
    current = read_topics(conn, md, names, keys)
    actions, before, after = plan(desired, current, provider=p["provider"], state=p["state"])
    if actions:
        execute(conn, actions, module.check_mode)
    if actions and not module.check_mode:
        md = settled_metadata(conn, actions)
        final = read_topics(conn, md, names, keys)
    else:
        final = {}
        for t in desired:
            if p["state"] == "absent":
                continue
            if t["name"] in after:
                final[t["name"]] = after[t["name"]]
    result = dict(changed=bool(actions), actions=actions, topics=topics_result(desired, final))
    if module._diff and actions:
        result["diff"] = dict(before=before, after=after if p["state"] == "present" else {})
    module.exit_json(**result)


def main():
    module = kafka_module(
        topics=dict(type="list", elements="dict", required=True, options=TOPIC_SPEC),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    run_kafka_module(module, "kafka_topic", run)


if __name__ == "__main__":
    main()
