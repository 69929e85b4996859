# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a consumer group with no committed offset starts. A per-replica (fan-out) group is new for
every new pod: starting it at the oldest offset would push days of old events to live WebSockets."""

from __future__ import annotations

import pytest
from ansible_collections.todo.platform.plugins.module_utils.dapr_pubsub import build_resources


def metadata(**overrides):
    p = dict(name="pubsub-fanout", namespace="todo", provider="strimzi", brokers=["kafka:9092"])
    p.update(overrides)
    return {m["name"]: m.get("value") for m in build_resources(p)["component"]["spec"]["metadata"]}


def test_per_replica_group_starts_at_the_newest_offset():
    md = metadata(consumer_group_per_replica=True, scopes=["sync"])
    assert md["consumerGroup"] == "{appID}-{podName}"
    assert md["initialOffset"] == "newest"


def test_shared_group_still_starts_at_the_oldest_offset():
    md = metadata(consumer_group_per_replica=False)
    assert md["consumerGroup"] == "{appID}"
    assert md["initialOffset"] == "oldest"


@pytest.mark.parametrize("per_replica", [True, False])
@pytest.mark.parametrize("offset", ["oldest", "newest"])
def test_an_explicit_offset_wins(per_replica, offset):
    assert metadata(consumer_group_per_replica=per_replica, initial_offset=offset)["initialOffset"] == offset
