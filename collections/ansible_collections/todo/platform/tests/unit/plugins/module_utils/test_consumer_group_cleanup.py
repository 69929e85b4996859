# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which per-pod consumer groups kafka_consumer_group_cleanup deletes (pure decision; the module is
run against a real Kafka in tests/integration/kafka_wiring)."""

from __future__ import annotations

import pytest
from ansible_collections.todo.platform.plugins.module_utils.providers import SettingError
from ansible_collections.todo.platform.plugins.modules.kafka_consumer_group_cleanup import decide, validate


def actions(live, groups):
    return {r["group"]: r["action"] for r in decide("sync-", set(live), groups)}


def test_only_empty_groups_of_vanished_pods_are_deleted():
    groups = {
        "sync-sync-abc-1": ("EMPTY", 0),  # pod gone, nobody consumes
        "sync-sync-abc-2": ("EMPTY", 0),  # pod alive (between rebalances)
        "sync-sync-abc-3": ("STABLE", 1),  # pod gone, a member still there
        "sync-sync-abc-4": ("PREPARING_REBALANCE", 0),
        "sync-sync-abc-5": ("DEAD", 0),
        "sync": ("STABLE", 2),  # the shared group of the app-id
        "sync-": ("EMPTY", 0),
        "audit": ("EMPTY", 0),
        "notsync-sync-abc-1": ("EMPTY", 0),
    }
    assert actions(["sync-abc-2"], groups) == {
        "sync-sync-abc-1": "delete",
        "sync-sync-abc-2": "keep_live_pod",
        "sync-sync-abc-3": "keep_has_members",
        "sync-sync-abc-4": "keep_has_members",
        "sync-sync-abc-5": "delete",
    }


@pytest.mark.parametrize(
    ("params", "setting", "text"),
    [
        ({"prefix": "sync", "live_pods": []}, "prefix", "must end with '-'"),
        ({"prefix": "", "live_pods": []}, "prefix", "for example sync-"),
        ({"prefix": " sync-", "live_pods": []}, "prefix", "for example sync-"),
        ({"prefix": "sync-", "live_pods": None}, "live_pods", "is required"),
        ({"prefix": "sync-", "live_pods": ["sync-a", " "]}, "live_pods", "empty pod name"),
    ],
)
def test_bad_input_names_the_option(params, setting, text):
    with pytest.raises(SettingError) as info:
        validate(params)
    assert info.value.setting == setting
    assert text in str(info.value)
