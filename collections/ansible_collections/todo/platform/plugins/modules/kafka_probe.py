#!/usr/bin/python
# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: kafka_probe
short_description: Check that Kafka can be reached, authenticated against and read
version_added: 0.1.0
author:
  - Todo Platform developers (@todo-platform)
description:
  - Resolves, dials and (for TLS) handshakes with each bootstrap server, then authenticates and
    reads the cluster metadata through the Kafka admin API.
  - Returns the brokers, the controller and the topics.
  - A failure is reported in one line and classified in RV(failure_class) as V(dns), V(tcp),
    V(tls), V(sasl_authentication), V(authorization), V(protocol) (the listener speaks another
    security protocol), V(timeout) or V(unknown).
extends_documentation_fragment:
  - todo.platform.kafka_connection
attributes:
  check_mode:
    support: full
    description: The probe only reads; it runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to compare.
options:
  topics:
    description:
      - Topics that must exist; the probe fails (class V(authorization) or V(missing_topic)) when
        one is missing or not readable.
    type: list
    elements: str
    default: []
  fail_on_error:
    description:
      - Fail the task when the probe fails. With V(false) the result carries RV(reachable=false)
        and RV(failure_class) instead, for runbooks that report rather than stop.
    type: bool
    default: true
seealso:
  - module: todo.platform.kafka_topic
"""

EXAMPLES = r"""
- name: Probe the SASL_SSL listener
  todo.platform.kafka_probe:
    bootstrap_servers: [todo-kafka-kafka-bootstrap.kafka.svc:9093]
    security_protocol: SASL_SSL
    sasl_mechanism: SCRAM-SHA-512
    sasl_username: todo-app
    sasl_password: "{{ vault_kafka_password }}"
    tls_ca_cert: "{{ kafka_ca_pem }}"
    topics: [task-events, reminders]
  register: probe

- name: Report without failing
  todo.platform.kafka_probe:
    bootstrap_servers: ["{{ kafka_bootstrap }}"]
    fail_on_error: false
  register: probe

- name: Show why Kafka cannot be used
  ansible.builtin.debug:
    msg: "{{ probe.failure_class }}: {{ probe.msg }}"
  when: not probe.reachable
"""

RETURN = r"""
reachable:
  description: Whether the metadata could be read.
  returned: always
  type: bool
failure_class:
  description: Class of the failure; empty when the probe passed.
  returned: always
  type: str
  sample: sasl_authentication
msg:
  description: One line describing the result or the failure and what to check.
  returned: always
  type: str
cluster_id:
  description: Kafka cluster id.
  returned: when reachable
  type: str
controller_id:
  description: Broker id of the active controller (-1 when the cluster does not report one).
  returned: when reachable
  type: int
brokers:
  description: Brokers the cluster advertises.
  returned: when reachable
  type: list
  elements: dict
  sample: [{id: 1, host: 127.0.0.1, port: 9092}]
topics:
  description: Topics visible to the user (internal topics left out).
  returned: when reachable
  type: list
  elements: dict
  sample: [{name: task-events, partitions: 3, replication_factor: 1}]
"""

from ansible_collections.todo.platform.plugins.module_utils.kafka import (
    HAS_CONFLUENT_KAFKA,
    KafkaFailure,
    connect,
    describe_metadata,
    kafka_module,
    missing_library_message,
)
from ansible_collections.todo.platform.plugins.module_utils.providers import SettingError


def probe(p):
    conn, md = connect(p, client_id="todo.platform.kafka_probe")
    info = describe_metadata(md)
    for name in p["topics"]:
        t = md.topics.get(name)
        if t is None or (t.error is not None and t.error.code() == 3):
            raise KafkaFailure(
                "missing_topic", f"topic {name} does not exist; create it with todo.platform.kafka_topic"
            )
        if t.error is not None:
            cls = "authorization" if "AUTHORIZATION" in t.error.name() else "unknown"
            raise KafkaFailure(cls, f"topic {name}: {t.error.str()}; grant Describe on it")
    return info


def main():
    module = kafka_module(
        topics=dict(type="list", elements="str", default=[]),
        fail_on_error=dict(type="bool", default=True),
    )
    if not HAS_CONFLUENT_KAFKA:
        module.fail_json(msg=missing_library_message("kafka_probe"), reachable=False, failure_class="")
    p = module.params
    try:
        info = probe(p)
    except SettingError as e:
        module.fail_json(msg=str(e), setting=e.setting, reachable=False, failure_class="")
    except KafkaFailure as e:
        result = dict(changed=False, reachable=False, failure_class=e.failure_class, msg=e.message)
        if p["fail_on_error"]:
            module.fail_json(**result)
        module.exit_json(**result)
    except Exception as e:  # never a traceback: one line saying what broke
        result = dict(
            changed=False,
            reachable=False,
            failure_class="unknown",
            msg="kafka_probe failed unexpectedly: {}: {}".format(type(e).__name__, " ".join(str(e).split())),
        )
        if p["fail_on_error"]:
            module.fail_json(**result)
        module.exit_json(**result)
    module.exit_json(
        changed=False,
        reachable=True,
        failure_class="",
        msg=f"{len(info['brokers'])} broker(s), controller {info['controller_id']}, "
        f"{len(info['topics'])} topic(s)",
        **info,
    )


if __name__ == "__main__":
    main()
