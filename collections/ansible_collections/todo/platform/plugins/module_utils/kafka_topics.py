# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of kafka_topic (desired topics -> plan of admin operations) and of
kafka_consumer_lag_info (offsets -> lag report)."""

from __future__ import annotations

import re

from ansible_collections.todo.platform.plugins.module_utils.providers import SettingError

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")

OCI_RETENTION_MIN_MS = 24 * 3600 * 1000
OCI_RETENTION_MAX_MS = 7 * 24 * 3600 * 1000

EVENT_HUBS_TOPICS_MESSAGE = (
    "Azure Event Hubs does not support topic management through the Kafka admin API: create the "
    "topics as event hubs in Azure instead (azure.azcollection.azure_rm_eventhub, the portal or az "
    "eventhubs eventhub create), then wire them with todo.platform.dapr_kafka_pubsub"
)


def _config_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def normalize_topics(topics, state="present"):
    """Validate the ``topics`` option; return a list of dicts with string configs."""
    if not topics:
        raise SettingError("topics", "needs at least one topic")
    seen = set()
    result = []
    for index, t in enumerate(topics):
        where = f"topics[{index}]"
        name = (t.get("name") or "").strip()
        if not _TOPIC_NAME.match(name) or name in (".", ".."):
            raise SettingError(
                where + ".name", f"'{name}' is not a valid topic name (letters, digits, '.', '_', '-')"
            )
        if name in seen:
            raise SettingError(where + ".name", f"topic '{name}' is listed twice")
        seen.add(name)
        partitions = t.get("partitions")
        if partitions is not None and partitions < 1:
            raise SettingError(where + ".partitions", f"must be at least 1, got {partitions}")
        rf = t.get("replication_factor")
        if rf is not None and rf < 1:
            raise SettingError(where + ".replication_factor", f"must be at least 1, got {rf}")
        config = {}
        for key, value in (t.get("config") or {}).items():
            if value is None:
                continue
            config[str(key)] = _config_value(value)
        retention = t.get("retention_ms")
        if retention is not None:
            if "retention.ms" in config and config["retention.ms"] != str(retention):
                raise SettingError(
                    where + ".retention_ms", "conflicts with config['retention.ms']; set only one"
                )
            if retention < -1 or retention == 0:
                raise SettingError(where + ".retention_ms", "must be -1 (forever) or a positive number of ms")
            config["retention.ms"] = str(retention)
        result.append(dict(name=name, partitions=partitions, replication_factor=rf, config=config))
    return result


def plan(desired, current, provider="external", state="present"):
    """Compare desired topics with the cluster.

    ``current`` maps topic name -> dict(partitions, replication_factor, config) for the topics
    that exist (config holds the broker's values of at least the keys asked for).
    Returns (actions, before, after): actions are dicts with ``op`` create | add_partitions |
    alter_config | delete; before/after describe the topics for the diff.
    """
    if provider == "azure_event_hubs":
        raise SettingError("provider", EVENT_HUBS_TOPICS_MESSAGE)
    actions = []
    before, after = {}, {}
    for t in desired:
        name = t["name"]
        have = current.get(name)
        if have is not None:
            before[name] = dict(
                partitions=have["partitions"],
                replication_factor=have["replication_factor"],
                config={k: have["config"].get(k) for k in sorted(t["config"])},
            )
        if state == "absent":
            if have is not None:
                actions.append(dict(op="delete", topic=name))
        elif have is None:
            after[name] = _plan_create(t, provider, actions)
        else:
            after[name] = _plan_change(t, have, before[name], provider, actions)
    return actions, before, after


def _plan_create(t, provider, actions):
    if provider == "oci_streaming":
        _check_oci_retention(t)
    actions.append(
        dict(
            op="create",
            topic=t["name"],
            partitions=t["partitions"],
            replication_factor=t["replication_factor"],
            config=dict(t["config"]),
        )
    )
    default = "broker default"
    return dict(
        partitions=default if t["partitions"] is None else t["partitions"],
        replication_factor=default if t["replication_factor"] is None else t["replication_factor"],
        config=dict(sorted(t["config"].items())),
    )


def _plan_change(t, have, before, provider, actions):
    name = t["name"]
    target = dict(before, config=dict(before["config"]))
    where = f"topic {name}"
    if t["partitions"] is not None and t["partitions"] != have["partitions"]:
        if provider == "oci_streaming":
            raise SettingError(
                "partitions",
                f"{where}: OCI Streaming cannot change the partition count of a stream after creation "
                f"(has {have['partitions']}, asked {t['partitions']}); create a new stream instead",
            )
        if t["partitions"] < have["partitions"]:
            raise SettingError(
                "partitions",
                f"{where}: Kafka cannot reduce partitions (has {have['partitions']}, asked "
                f"{t['partitions']}); keep {have['partitions']} or recreate the topic",
            )
        actions.append(dict(op="add_partitions", topic=name, partitions=t["partitions"]))
        target["partitions"] = t["partitions"]
    if t["replication_factor"] is not None and t["replication_factor"] != have["replication_factor"]:
        raise SettingError(
            "replication_factor",
            f"{where}: changing the replication factor ({have['replication_factor']} -> "
            f"{t['replication_factor']}) needs a partition reassignment, which this module does not do; "
            "use kafka-reassign-partitions or recreate the topic",
        )
    changes = {k: v for k, v in t["config"].items() if have["config"].get(k) != v}
    if changes:
        if provider == "oci_streaming":
            raise SettingError(
                "config",
                "{}: OCI Streaming cannot change {} after creation; create a new stream instead".format(
                    where, ", ".join(sorted(changes))
                ),
            )
        actions.append(dict(op="alter_config", topic=name, config=changes))
        target["config"].update(changes)
    return target


def _check_oci_retention(t):
    extra = sorted(k for k in t["config"] if k != "retention.ms")
    if extra:
        raise SettingError(
            "config", f"topic {t['name']}: OCI Streaming does not accept topic configs {', '.join(extra)}"
        )
    retention = t["config"].get("retention.ms")
    if retention is None:
        return
    value = int(retention)
    if not OCI_RETENTION_MIN_MS <= value <= OCI_RETENTION_MAX_MS:
        raise SettingError(
            "retention_ms",
            f"topic {t['name']}: OCI Streaming keeps messages between 24 hours ({OCI_RETENTION_MIN_MS}) "
            f"and 7 days ({OCI_RETENTION_MAX_MS}), got {value}",
        )


# ---------------------------------------------------------------- consumer lag


def partition_lag(committed, end, start=0):
    """Lag of one partition. A group that never committed is behind by everything retained."""
    if end is None or end < 0:
        return None
    if committed is None or committed < 0:
        return max(end - max(start or 0, 0), 0)
    return max(end - committed, 0)


def lag_report(group_offsets, end_offsets, start_offsets=None, states=None):
    """Build the lag report.

    group_offsets: {group: {(topic, partition): committed or None}}
    end_offsets / start_offsets: {(topic, partition): offset}
    states: {group: state string}
    """
    start_offsets = start_offsets or {}
    states = states or {}
    groups = []
    total = 0
    for group in sorted(group_offsets):
        topics = {}
        for (topic, partition), committed in sorted(group_offsets[group].items()):
            end = end_offsets.get((topic, partition))
            lag = partition_lag(committed, end, start_offsets.get((topic, partition), 0))
            entry = topics.setdefault(topic, {"topic": topic, "lag": 0, "partitions": []})
            entry["partitions"].append(
                {
                    "partition": partition,
                    "committed_offset": committed if committed is not None and committed >= 0 else None,
                    "end_offset": end,
                    "lag": lag,
                }
            )
            entry["lag"] += lag or 0
        group_lag = sum(t["lag"] for t in topics.values())
        total += group_lag
        groups.append(
            {
                "group": group,
                "state": states.get(group),
                "lag": group_lag,
                "topics": [topics[k] for k in sorted(topics)],
            }
        )
    return {"groups": groups, "total_lag": total}
