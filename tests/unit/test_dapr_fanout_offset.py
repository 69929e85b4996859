"""The dapr role's pub/sub components, built the way roles/dapr/tasks/configure.yml calls
todo.platform.dapr_kafka_pubsub (its arguments templated with the role's defaults and each loop item):
the fan-out component starts new groups (one per sync pod) at the newest offset, the shared one at
the oldest."""

from __future__ import annotations

from pathlib import Path

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible_collections.todo.platform.plugins.module_utils.dapr_pubsub import build_resources

ROOT = Path(__file__).resolve().parents[2]
MODULE = "todo.platform.dapr_kafka_pubsub"
OMIT = "<omitted>"


def components(overrides: dict | None = None) -> dict[str, dict]:
    loader = DataLoader()
    defaults_file = str(ROOT / "roles/dapr/defaults/main.yml")
    defaults = dict(loader.load_from_file(defaults_file, trusted_as_template=True))
    # the role's vars (the topic scopes built from the defaults) as the role sees them
    defaults.update(loader.load_from_file(str(ROOT / "roles/dapr/vars/main.yml"), trusted_as_template=True))
    defaults.update(overrides or {})
    tasks = loader.load_from_file(str(ROOT / "roles/dapr/tasks/configure.yml"), trusted_as_template=True)
    (task,) = [t for t in tasks if MODULE in t]
    out = {}
    for raw_item in task["loop"]:
        item = Templar(loader=loader, variables=defaults).template(raw_item)
        templar = Templar(loader=loader, variables={**defaults, "item": item, "omit": OMIT})
        args = {k: v for k, v in templar.template(task[MODULE]).items() if v != OMIT}
        out[args["name"]] = {
            m["name"]: m.get("value") for m in build_resources(args)["component"]["spec"]["metadata"]
        }
    return out


def test_fanout_component_starts_new_groups_at_newest_and_shared_at_oldest() -> None:
    built = components()
    assert built["pubsub-fanout"]["consumerGroup"] == "{appID}-{podName}"
    assert built["pubsub-fanout"]["initialOffset"] == "newest"
    assert built["pubsub"]["consumerGroup"] == "{appID}"
    assert built["pubsub"]["initialOffset"] == "oldest"


def test_shared_offset_setting_does_not_reach_the_fanout_component() -> None:
    settings = {"brokers": ["kafka:9092"], "initial_offset": "oldest"}
    built = components({"dapr_pubsub_settings": settings})
    assert built["pubsub-fanout"]["initialOffset"] == "newest"
    built = components(
        {
            "dapr_pubsub_settings": {**settings, "initial_offset": "newest"},
            "dapr_pubsub_fanout_initial_offset": "oldest",
        }
    )
    assert built["pubsub"]["initialOffset"] == "newest"
    assert built["pubsub-fanout"]["initialOffset"] == "oldest"


def test_both_components_carry_the_topic_scopes() -> None:
    # Only the backend publishes task events, only notification reminders; sync only dead letters.
    for name, metadata in components().items():
        publishing = dict(entry.split("=", 1) for entry in metadata["publishingScopes"].split(";"))
        assert publishing["backend"].split(",")[0] == "task-events", (name, publishing)
        assert {"task-events", "reminders"}.isdisjoint(publishing["sync"].split(",")), (name, publishing)
        assert "task-events" in metadata["protectedTopics"].split(","), (name, metadata["protectedTopics"])
