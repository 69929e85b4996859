# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Topic planning and lag arithmetic (pure logic)."""

from __future__ import annotations

import pytest
from ansible_collections.todo.platform.plugins.module_utils.kafka_topics import (
    lag_report,
    normalize_topics,
    partition_lag,
    plan,
)
from ansible_collections.todo.platform.plugins.module_utils.providers import SettingError

DAY = 86400000


def topics(*items):
    return normalize_topics(
        [
            dict(dict(partitions=None, replication_factor=None, retention_ms=None, config=None), **i)
            for i in items
        ]
    )


def existing(partitions=3, rf=1, **config):
    return dict(
        partitions=partitions,
        replication_factor=rf,
        config={k.replace("_", "."): v for k, v in config.items()},
    )


def test_normalize_turns_retention_and_config_into_strings():
    (t,) = topics(
        dict(
            name="task-events",
            partitions=3,
            retention_ms=DAY,
            config={"cleanup.policy": "delete", "preallocate": True},
        )
    )
    assert t["config"] == {"retention.ms": str(DAY), "cleanup.policy": "delete", "preallocate": "true"}


@pytest.mark.parametrize(
    "item, setting",
    [
        (dict(name="bad name"), "topics[0].name"),
        (dict(name=""), "topics[0].name"),
        (dict(name="t", partitions=0), "topics[0].partitions"),
        (dict(name="t", replication_factor=0), "topics[0].replication_factor"),
        (dict(name="t", retention_ms=0), "topics[0].retention_ms"),
        (dict(name="t", retention_ms=5, config={"retention.ms": "6"}), "topics[0].retention_ms"),
    ],
)
def test_normalize_rejects(item, setting):
    with pytest.raises(SettingError) as info:
        topics(item)
    assert info.value.setting == setting


def test_duplicate_topic_rejected():
    with pytest.raises(SettingError, match="listed twice"):
        topics(dict(name="a"), dict(name="a"))


def test_empty_topics_rejected():
    with pytest.raises(SettingError):
        normalize_topics([])


def test_missing_topic_is_created():
    actions, before, after = plan(
        topics(dict(name="a", partitions=3, replication_factor=1, retention_ms=DAY)), {}
    )
    assert actions == [
        dict(op="create", topic="a", partitions=3, replication_factor=1, config={"retention.ms": str(DAY)})
    ]
    assert before == {}
    assert after["a"]["partitions"] == 3


def test_matching_topic_is_unchanged():
    actions, before, after = plan(
        topics(dict(name="a", partitions=3, retention_ms=DAY)), {"a": existing(3, retention_ms=str(DAY))}
    )
    assert actions == []
    assert before == after


def test_unspecified_settings_are_not_compared():
    actions = plan(topics(dict(name="a")), {"a": existing(12, 3, retention_ms="1")})[0]
    assert actions == []


def test_partitions_grow():
    actions, before, after = plan(topics(dict(name="a", partitions=6)), {"a": existing(3)})
    assert actions == [dict(op="add_partitions", topic="a", partitions=6)]
    assert (before["a"]["partitions"], after["a"]["partitions"]) == (3, 6)


def test_partition_decrease_refused():
    with pytest.raises(SettingError, match="cannot reduce partitions") as info:
        plan(topics(dict(name="a", partitions=2)), {"a": existing(3)})
    assert info.value.setting == "partitions"


def test_replication_factor_change_refused():
    with pytest.raises(SettingError, match="reassignment") as info:
        plan(topics(dict(name="a", replication_factor=3)), {"a": existing(3, 1)})
    assert info.value.setting == "replication_factor"


def test_config_change_is_altered():
    actions, before, after = plan(
        topics(dict(name="a", retention_ms=2 * DAY)), {"a": existing(retention_ms=str(DAY))}
    )
    assert actions == [dict(op="alter_config", topic="a", config={"retention.ms": str(2 * DAY)})]
    assert before["a"]["config"] == {"retention.ms": str(DAY)}
    assert after["a"]["config"] == {"retention.ms": str(2 * DAY)}


def test_absent_deletes_only_existing():
    actions = plan(topics(dict(name="a"), dict(name="b")), {"a": existing()}, state="absent")[0]
    assert actions == [dict(op="delete", topic="a")]


def test_event_hubs_refused_with_advice():
    with pytest.raises(SettingError, match="create the topics as event hubs in Azure"):
        plan(topics(dict(name="a")), {}, provider="azure_event_hubs")


def test_oci_partition_change_refused():
    with pytest.raises(SettingError, match="OCI Streaming cannot change the partition count"):
        plan(topics(dict(name="a", partitions=6)), {"a": existing(3)}, provider="oci_streaming")


def test_oci_retention_change_refused():
    with pytest.raises(SettingError, match="OCI Streaming cannot change retention.ms"):
        plan(
            topics(dict(name="a", retention_ms=2 * DAY)),
            {"a": existing(retention_ms=str(DAY))},
            provider="oci_streaming",
        )


def test_oci_retention_bounds_at_creation():
    plan(topics(dict(name="a", retention_ms=DAY)), {}, provider="oci_streaming")
    plan(topics(dict(name="a", retention_ms=7 * DAY)), {}, provider="oci_streaming")
    with pytest.raises(SettingError, match="between 24 hours"):
        plan(topics(dict(name="a", retention_ms=DAY - 1)), {}, provider="oci_streaming")
    with pytest.raises(SettingError, match="between 24 hours"):
        plan(topics(dict(name="a", retention_ms=8 * DAY)), {}, provider="oci_streaming")


def test_oci_other_configs_refused():
    with pytest.raises(SettingError, match="does not accept topic configs cleanup.policy"):
        plan(topics(dict(name="a", config={"cleanup.policy": "compact"})), {}, provider="oci_streaming")


def test_oci_unchanged_topic_is_fine():
    actions = plan(
        topics(dict(name="a", partitions=3, retention_ms=DAY)),
        {"a": existing(3, retention_ms=str(DAY))},
        provider="oci_streaming",
    )[0]
    assert actions == []


# ------------------------------------------------------------------ lag


def test_partition_lag():
    assert partition_lag(7, 10) == 3
    assert partition_lag(10, 10) == 0
    assert partition_lag(None, 10, start=4) == 6  # never committed: everything retained
    assert partition_lag(-1001, 10) == 10
    assert partition_lag(5, None) is None


def test_lag_report_sums_per_topic_group_and_total():
    report = lag_report(
        {
            "audit": {("task-events", 0): 5, ("task-events", 1): 10},
            "sync": {("task-events", 0): 8, ("reminders", 0): None},
        },
        {("task-events", 0): 10, ("task-events", 1): 12, ("reminders", 0): 4},
        {("reminders", 0): 1},
        {"audit": "STABLE"},
    )
    audit, sync = report["groups"]
    assert audit["group"] == "audit" and audit["state"] == "STABLE"
    assert audit["lag"] == 5 + 2
    assert audit["topics"][0]["partitions"] == [
        dict(partition=0, committed_offset=5, end_offset=10, lag=5),
        dict(partition=1, committed_offset=10, end_offset=12, lag=2),
    ]
    assert sync["lag"] == 2 + 3
    assert [t["topic"] for t in sync["topics"]] == ["reminders", "task-events"]
    assert sync["topics"][0]["partitions"][0]["committed_offset"] is None
    assert report["total_lag"] == 12
