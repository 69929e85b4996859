"""kafka_consumer_group_cleanup against the test bed's real Kafka: the per-pod groups of the fan-out
component (<appID>-<podName>) whose pod is gone and that have no members are deleted; the groups of
live pods, groups with members and groups of other applications stay."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kw_ansible import connection_args, run_module
from testbed.polling import eventually

pytestmark = pytest.mark.testbed


def groups_with_prefix(kafka, prefix: str) -> set[str]:
    """What the broker really holds, read with a plain admin client (not the module)."""
    admin = AdminClient(kafka.client_config("plaintext"))
    listing = admin.list_consumer_groups(request_timeout=60).result()
    return {g.group_id for g in listing.valid if g.group_id.startswith(prefix)}


def committed_group(kafka, group: str, topic: str) -> None:
    """A group left behind by a consumer that is gone: committed offsets, no members (EMPTY)."""
    consumer = Consumer({**kafka.client_config("plaintext"), "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    consumer.close()


def member_group(kafka, group: str, topic: str) -> Consumer:
    """A group with a live member (subscribed and assigned); the caller closes it."""
    consumer = Consumer(
        {
            **kafka.client_config("plaintext"),
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])

    def assigned() -> list:
        consumer.poll(0.5)  # joins the group and serves the assignment
        return consumer.assignment()

    eventually(assigned, f"{group} getting an assignment", within=60, interval=0)
    return consumer


def test_orphaned_per_pod_groups_are_deleted_and_nothing_else(kafka):
    run_id = uuid.uuid4().hex[:8]
    prefix = f"kwfan{run_id}-"  # like "sync-": <appID>- before the pod name
    topic = f"kw-fanout-{run_id}"
    admin = AdminClient(kafka.client_config("plaintext"))
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(60)

    gone = f"{prefix}{prefix}5d8f-gone1"  # pod names start with the app-id too
    live = f"{prefix}{prefix}5d8f-live1"
    busy = f"{prefix}{prefix}5d8f-busy1"  # pod gone, but a consumer is still a member
    other = f"other{run_id}-{prefix}5d8f-gone1"
    for group in (gone, live, other):
        committed_group(kafka, group, topic)
    consumer = member_group(kafka, busy, topic)
    live_pods = [live.removeprefix(prefix), f"{prefix}5d8f-new99"]
    conn = connection_args(kafka, "plaintext")
    args = {**conn, "prefix": prefix, "live_pods": live_pods}
    try:
        # check mode: the orphan is reported, nothing is deleted
        r = run_module("kafka_consumer_group_cleanup", args, check=True, diff=True)
        assert not r.failed, r.result.get("msg")
        assert r.changed
        assert r.result["deleted"] == [gone]
        actions = {g["group"]: g["action"] for g in r.result["groups"]}
        assert actions == {gone: "delete", live: "keep_live_pod", busy: "keep_has_members"}
        assert r.result["diff"]["after"]["groups"] == sorted([live, busy])
        assert groups_with_prefix(kafka, prefix) == {gone, live, busy}

        # apply: only the orphan goes
        r = run_module("kafka_consumer_group_cleanup", args)
        assert not r.failed, r.result.get("msg")
        assert r.changed and r.result["deleted"] == [gone]
        assert groups_with_prefix(kafka, prefix) == {live, busy}
        assert other in groups_with_prefix(kafka, f"other{run_id}-")

        # re-apply: nothing to do
        r = run_module("kafka_consumer_group_cleanup", args)
        assert not r.failed, r.result.get("msg")
        assert not r.changed and r.result["deleted"] == []
    finally:
        consumer.close()

    # the last member left: the group of the vanished pod is now an orphan too
    r = run_module("kafka_consumer_group_cleanup", args)
    assert not r.failed, r.result.get("msg")
    assert r.changed and r.result["deleted"] == [busy]
    assert groups_with_prefix(kafka, prefix) == {live}

    # the application scaled to zero: no pod exists, every empty group of the prefix goes
    r = run_module("kafka_consumer_group_cleanup", {**args, "live_pods": []})
    assert not r.failed, r.result.get("msg")
    assert r.result["deleted"] == [live]
    assert groups_with_prefix(kafka, prefix) == set()
    assert other in groups_with_prefix(kafka, f"other{run_id}-")
    admin.delete_consumer_groups([other], request_timeout=60)[other].result()
    admin.delete_topics([topic])[topic].result(60)


@pytest.mark.parametrize(
    ("args", "text"),
    [
        ({"prefix": "sync", "live_pods": []}, "must end with '-'"),
        ({"prefix": " ", "live_pods": []}, "prefix: must be the group id before the pod name"),
        ({"prefix": "sync-", "live_pods": [""]}, "live_pods: holds an empty pod name"),
    ],
)
def test_bad_input_is_refused_before_anything_is_deleted(kafka, args, text):
    r = run_module("kafka_consumer_group_cleanup", {**connection_args(kafka, "plaintext"), **args})
    assert r.failed
    assert text in r.result["msg"]


def test_live_pods_is_required(kafka):
    r = run_module("kafka_consumer_group_cleanup", {**connection_args(kafka, "plaintext"), "prefix": "sync-"})
    assert r.failed
    assert "live_pods" in r.result["msg"]
