"""What each app may do through Dapr (issue 17, item 11), from the dapr role's own variables.

Pub/sub topic scopes, on real daprd processes of the test bed: the component carries exactly the
metadata the role gives todo.platform.dapr_kafka_pubsub (``extra_metadata``), and daprd (Dapr 1.18
pkg/scopes, pkg/runtime/pubsub IsOperationAllowed) refuses a sync sidecar's publish to the task
and reminder topics, while the backend's publish and sync's dead-letter publish go through.

Service invocation: ``accessControl`` identifies the caller only by its sentry-issued mTLS
certificate (pkg/acl ApplyAccessControlPolicies reads the SPIFFE id from the connection; without
one it applies the default action). The process test bed runs daprd without sentry, so here the
rendered Configuration is checked against those semantics; enforcement itself is not exercised.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from testbed.daprd import SubscriberApp, kafka_pubsub_component
from testbed.polling import eventually

pytestmark = pytest.mark.testbed

ROOT = Path(__file__).resolve().parents[2]


def role_value(expression: str) -> object:
    """``expression`` evaluated by Ansible with the dapr role's defaults and vars."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"),
    }
    args = [
        str(Path(sys.executable).with_name("ansible")),
        "localhost",
        "-c",
        "local",
        "-i",
        "localhost,",
        "-m",
        "ansible.builtin.debug",
        "-a",
        f"msg={{{{ {expression} | to_json }}}}",
        "-e",
        "@roles/dapr/defaults/main.yml",
        "-e",
        "@roles/dapr/vars/main.yml",
    ]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return json.loads(result["msg"])


@pytest.fixture(scope="module")
def topic_scopes(kafka) -> dict[str, str]:
    scopes = role_value("_dapr_topic_scopes")
    # The protected topics exist beforehand: a first publish to a topic Kafka is still creating
    # answers 500 (leader not available), which is not what these tests are about.
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(kafka.client_config("plaintext"))
    # as the broker would auto-create them (num.partitions=3)
    names = scopes["protectedTopics"].split(",")
    topics = [NewTopic(t, num_partitions=3, replication_factor=1) for t in names]
    for future in admin.create_topics(topics).values():
        try:
            future.result(60)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    return scopes


def publish(sidecar, topic: str, marker: str = "") -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{sidecar.http_port}/v1.0/publish/pubsub/{topic}",
        json={"marker": marker or uuid.uuid4().hex},
        timeout=30,
    )


def wait_for_log_line(sidecar, line: str, seconds: float = 120) -> None:
    def logged() -> bool:
        assert line in sidecar.log_file.read_text(errors="replace"), f"not yet in {sidecar.log_file}"
        return True

    eventually(logged, f"daprd saying {line!r}", within=seconds, interval=0.5)


def resources_for(kafka, directory: Path, topic_scopes: dict[str, str]) -> Path:
    """The test bed's Kafka component (a consumer group of its own) plus the role's scope metadata."""
    text = kafka_pubsub_component(
        kafka.plaintext, consumer_group=f"lp-{uuid.uuid4().hex[:8]}", initial_offset="oldest"
    )
    component = yaml.safe_load(text)
    component["spec"]["metadata"] += [{"name": k, "value": v} for k, v in topic_scopes.items()]
    directory.mkdir(parents=True)
    (directory / "pubsub.yaml").write_text(yaml.safe_dump(component))
    return directory


def wait_for_marker(app: SubscriberApp, marker: str) -> None:
    """Other tests publish to the same topic; skip their events."""

    def marked() -> bool:
        _, _, body = app.wait_event(5)  # AssertionError when none came: wait on
        assert marker in json.dumps(body), f"another test's event: {body}"
        return True

    eventually(marked, f"the event marked {marker}", within=120, interval=0)


def test_a_sync_sidecar_cannot_publish_task_events(kafka, daprd_factory, tmp_path, topic_scopes):
    subscription = [{"pubsubname": "pubsub", "topic": "task-events", "route": "/events"}]
    audit_app, backend_app = SubscriberApp(subscription), SubscriberApp(subscription)
    try:
        sidecars = {
            "sync": daprd_factory("sync", None, resources_for(kafka, tmp_path / "sync", topic_scopes)),
            "backend": daprd_factory(
                "backend", backend_app.port, resources_for(kafka, tmp_path / "backend", topic_scopes)
            ),
            "audit": daprd_factory(
                "audit", audit_app.port, resources_for(kafka, tmp_path / "audit", topic_scopes)
            ),
        }
        for app, topic in [("sync", "task-events"), ("sync", "reminders"), ("audit", "task-events")]:
            response = publish(sidecars[app], topic)
            assert response.status_code == 403, (app, topic, response.status_code, response.text)
            assert response.json()["errorCode"] == "ERR_PUBSUB_FORBIDDEN", response.text
        for app in ("sync", "audit"):
            response = publish(sidecars[app], "task-events-dlq")
            assert response.status_code == 204, (app, response.text)
        marker = uuid.uuid4().hex
        allowed = publish(sidecars["backend"], "task-events", marker)
        assert allowed.status_code == 204, allowed.text
        # Subscriptions: audit receives the backend's event; the backend may not subscribe at all.
        wait_for_marker(audit_app, marker)
        wait_for_log_line(
            sidecars["backend"], "subscription to topic 'task-events' on pubsub 'pubsub' is not allowed"
        )
        assert backend_app.events.empty()
    finally:
        audit_app.close()
        backend_app.close()


def test_invocation_is_denied_except_recurring_to_the_next_occurrence_route():
    objects = role_value(
        "lookup('ansible.builtin.template', 'roles/dapr/templates/dapr-objects.yml.j2')"
        " | ansible.builtin.from_yaml_all | list"
    )
    [config] = [o for o in objects if o["kind"] == "Configuration"]
    acl = config["spec"]["accessControl"]
    assert acl["defaultAction"] == "deny" and acl["trustDomain"] == "public"
    [policy] = acl["policies"]
    assert policy == {
        "appId": "recurring-task",
        "defaultAction": "deny",
        "trustDomain": "public",
        "namespace": "todo",
        "operations": [
            {"name": "/internal/tasks/*-*-*-*-*/next-occurrence", "httpVerb": ["POST"], "action": "allow"},
        ],
    }
    # The caller's identity is its sentry certificate: mTLS must stay on in the chart values.
    assert role_value("_dapr_chart_values_base.global.mtls.enabled") is True
