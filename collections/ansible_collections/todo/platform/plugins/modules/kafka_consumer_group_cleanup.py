#!/usr/bin/python
# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: kafka_consumer_group_cleanup
short_description: Delete the per-pod Kafka consumer groups of pods that no longer exist
version_added: 0.1.0
author:
  - Todo Platform developers (@todo-platform)
description:
  - A Dapr pub/sub component with C(consumerGroup) C({appID}-{podName}) (the fan-out component,
    O(todo.platform.dapr_kafka_pubsub#module:consumer_group_per_replica=true)) creates one consumer
    group per pod.
    Pods of a Deployment get new names on every rollout, reschedule or scale-in, so their groups
    stay behind with committed offsets and count against the provider's limits (OCI Streaming
    allows 50 consumer groups per stream).
  - This module deletes the groups named O(prefix) followed by the name of a pod that is not in
    O(live_pods), and only when the group has no members (state C(EMPTY) or C(DEAD)). A group of a
    live pod, a group with members (its pod may still be shutting down, or a new consumer joined)
    and every group not starting with O(prefix) are never touched.
  - Pass the names of the pods that exist right now (for example from M(kubernetes.core.k8s_info));
    an empty list means no pod of the application exists.
extends_documentation_fragment:
  - todo.platform.kafka_connection
attributes:
  check_mode:
    support: full
    description: Reports the groups it would delete and deletes nothing.
  diff_mode:
    support: full
    description: The matching groups before and after.
options:
  prefix:
    description:
      - The part of the group id before the pod name, for example V(sync-) for the groups
        C({appID}-{podName}) of the app-id C(sync) (whose pods are named C(sync-...)).
      - Must end with C(-) so that it cannot match another application's groups by accident.
    type: str
    required: true
  live_pods:
    description:
      - Names of the pods that exist now. Their groups are kept whatever their state.
    type: list
    elements: str
    required: true
seealso:
  - module: todo.platform.dapr_kafka_pubsub
  - module: todo.platform.kafka_consumer_lag_info
"""

EXAMPLES = r"""
- name: Find the sync pods that exist
  kubernetes.core.k8s_info:
    kind: Pod
    namespace: todo
    label_selector: app.kubernetes.io/name=sync
  register: sync_pods

- name: Delete the fan-out consumer groups of sync pods that are gone
  todo.platform.kafka_consumer_group_cleanup:
    bootstrap_servers: [todo-kafka-kafka-bootstrap.kafka.svc:9092]
    prefix: sync-
    live_pods: "{{ sync_pods.resources | map(attribute='metadata.name') | list }}"
"""

RETURN = r"""
deleted:
  description: Groups deleted (in check mode, the groups that would be deleted).
  returned: always
  type: list
  elements: str
  sample: [sync-sync-7c9f6d9b8-x2k4q]
groups:
  description: Every group that starts with O(prefix), with what was decided for it.
  returned: always
  type: list
  elements: dict
  contains:
    group:
      description: Consumer group id.
      type: str
      returned: always
    pod:
      description: The pod name the group id carries.
      type: str
      returned: always
    state:
      description: Group state reported by the coordinator (for example STABLE or EMPTY).
      type: str
      returned: always
    members:
      description: Number of members.
      type: int
      returned: always
    action:
      description: V(delete), V(keep_live_pod) or V(keep_has_members).
      type: str
      returned: always
"""

from ansible_collections.todo.platform.plugins.module_utils.kafka import (
    HAS_CONFLUENT_KAFKA,
    KafkaFailure,
    connect,
    kafka_module,
    run_kafka_module,
)
from ansible_collections.todo.platform.plugins.module_utils.providers import SettingError

if HAS_CONFLUENT_KAFKA:
    from confluent_kafka import KafkaError, KafkaException

# Only groups nobody consumes from are deleted.
DELETABLE_STATES = ("EMPTY", "DEAD")


def validate(p):
    prefix = p.get("prefix") or ""
    if not prefix.strip() or prefix != prefix.strip():
        raise SettingError("prefix", "must be the group id before the pod name, for example sync-")
    if not prefix.endswith("-"):
        raise SettingError(
            "prefix", f"'{prefix}' must end with '-' (groups are named <appID>-<podName>, for example sync-)"
        )
    pods = p.get("live_pods")
    if pods is None:
        raise SettingError("live_pods", "is required (an empty list means no pod exists)")
    for pod in pods:
        if not isinstance(pod, str) or not pod.strip():
            raise SettingError("live_pods", "holds an empty pod name")
    return prefix, set(pods)


def decide(prefix, live_pods, groups):
    """groups: {group: (state, members)} of every visible group. Returns the report rows, sorted."""
    rows = []
    for group in sorted(groups):
        if not group.startswith(prefix) or len(group) == len(prefix):
            continue
        state, members = groups[group]
        pod = group[len(prefix) :]
        if pod in live_pods:
            action = "keep_live_pod"
        elif members or state not in DELETABLE_STATES:
            action = "keep_has_members"
        else:
            action = "delete"
        rows.append(dict(group=group, pod=pod, state=state, members=members, action=action))
    return rows


def _result(conn, future):
    try:
        return future.result()
    except KafkaException as e:
        raise conn.fail_from(e) from None


def run(module):
    p = module.params
    prefix, live_pods = validate(p)
    conn, _md = connect(p, client_id="todo.platform.kafka_consumer_group_cleanup")
    t = conn.timeout
    listing = _result(conn, conn.admin.list_consumer_groups(request_timeout=t))
    names = sorted(g.group_id for g in listing.valid if g.group_id.startswith(prefix))
    groups = {}
    if names:
        for group, future in conn.admin.describe_consumer_groups(names, request_timeout=t).items():
            desc = _result(conn, future)
            groups[group] = (getattr(desc.state, "name", str(desc.state)), len(desc.members or []))
    rows = decide(prefix, live_pods, groups)
    doomed = [r["group"] for r in rows if r["action"] == "delete"]
    deleted = list(doomed)
    if doomed and not module.check_mode:
        deleted = []
        for group, future in conn.admin.delete_consumer_groups(doomed, request_timeout=t).items():
            try:
                future.result()
                deleted.append(group)
            except KafkaException as e:
                err = e.args[0] if e.args else None
                code = err.code() if hasattr(err, "code") else None
                row = next(r for r in rows if r["group"] == group)
                if code == KafkaError.GROUP_ID_NOT_FOUND:
                    row["action"] = "already_gone"
                elif code == KafkaError.NON_EMPTY_GROUP:
                    row["action"] = "keep_has_members"  # a consumer joined since it was described
                else:
                    raise KafkaFailure(
                        "unknown",
                        f"deleting consumer group {group} failed: {' '.join(str(err).split())}; "
                        "the provider may not support deleting groups (Kafka DeleteGroups API) or the "
                        "user lacks the Delete ACL on the group",
                    ) from None
    result = dict(changed=bool(deleted), deleted=sorted(deleted), groups=rows)
    if module._diff:
        before = [r["group"] for r in rows]
        result["diff"] = dict(
            before={"groups": before}, after={"groups": [g for g in before if g not in deleted]}
        )
    return result


def main():
    module = kafka_module(
        prefix=dict(type="str", required=True),
        live_pods=dict(type="list", elements="str", required=True),
    )
    result = run_kafka_module(module, "kafka_consumer_group_cleanup", run)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
