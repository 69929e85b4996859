"""The Kafka runbooks end to end (fanout-groups-cleanup.yml, consumer-lag.yml): the pods come from
the test bed's Kubernetes API (kwok), the groups live in the test bed's real Kafka (reached as an
external Kafka, like a managed one from the control host). The app-id is unique per run so that no
other test's groups can match."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = pytest.mark.testbed

ROOT = Path(__file__).resolve().parents[3]
RUNBOOK = ROOT / "playbooks/runbooks/fanout-groups-cleanup.yml"
LAG_RUNBOOK = ROOT / "playbooks/runbooks/consumer-lag.yml"


def groups_with_prefix(kafka, prefix: str) -> set[str]:
    admin = AdminClient(kafka.client_config("plaintext"))
    listing = admin.list_consumer_groups(request_timeout=60).result()
    return {g.group_id for g in listing.valid if g.group_id.startswith(prefix)}


def left_behind(kafka, group: str, topic: str) -> None:
    consumer = Consumer({**kafka.client_config("plaintext"), "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    consumer.close()


def inventory(tmp_path: Path, kube, kafka, namespace: str, app: str, provider: str) -> Path:
    inv = tmp_path / provider
    (inv / "group_vars/todo_platform").mkdir(parents=True)
    hosts = {
        "todo_platform": {
            "hosts": {
                "todo-test": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
            }
        }
    }
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    group_vars = {
        "cluster_kubeconfig": str(kube.kubeconfig),
        "cluster_context": kube.context,
        "kafka_provider": provider,
        "kafka_external": {"bootstrap_servers": [kafka.bootstrap("plaintext")]},
        "apps_namespace": namespace,
        "dapr_pubsub_fanout_scopes": [app],
    }
    (inv / "group_vars/todo_platform/main.yml").write_text(yaml.safe_dump(group_vars))
    return inv


def run_runbook(inv: Path, *extra: str, runbook: Path = RUNBOOK) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
    )
    return subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), str(runbook), "-i", str(inv), *extra],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=600,
        check=False,
    )


def test_runbook_deletes_the_groups_of_vanished_pods(tmp_path, kube, kafka):
    run_id = uuid.uuid4().hex[:8]
    app = f"kwfan{run_id}"
    namespace = f"kwrb-{run_id}"
    topic = f"kw-runbook-{run_id}"
    kube.kubectl("create", "namespace", namespace)
    for pod in (f"{app}-6c5d-live1", f"{app}-6c5d-live2"):
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod, "namespace": namespace, "labels": {"app.kubernetes.io/name": app}},
            "spec": {"containers": [{"name": "app", "image": "example.invalid/sync:1"}]},
        }
        (tmp_path / f"{pod}.json").write_text(json.dumps(manifest))
        kube.kubectl("apply", "-f", str(tmp_path / f"{pod}.json"))
    admin = AdminClient(kafka.client_config("plaintext"))
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(60)
    prefix = f"{app}-"
    live, gone = f"{prefix}{app}-6c5d-live1", f"{prefix}{app}-5b4a-gone1"
    for group in (live, gone):
        left_behind(kafka, group, topic)

    # strimzi: the run explains that the brokers expire empty groups and deletes nothing
    result = run_runbook(inventory(tmp_path, kube, kafka, namespace, app, "strimzi"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "offsets.retention.minutes" in result.stdout
    assert groups_with_prefix(kafka, prefix) == {live, gone}

    inv = inventory(tmp_path, kube, kafka, namespace, app, "external")
    result = run_runbook(inv, "--check")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert gone in result.stdout
    assert groups_with_prefix(kafka, prefix) == {live, gone}

    result = run_runbook(inv)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert groups_with_prefix(kafka, prefix) == {live}

    kube.kubectl("delete", "namespace", namespace, "--wait=false")
    admin.delete_consumer_groups([live], request_timeout=60)[live].result()
    admin.delete_topics([topic])[topic].result(60)


def test_consumer_lag_runbook_reads_an_unauthenticated_kafka(tmp_path, kube, kafka):
    """No SASL user name set: the runbook must leave it out (not pass Ansible's omit placeholder)."""
    run_id = uuid.uuid4().hex[:8]
    topic = "task-events"
    group = f"audit-kwlag{run_id}"
    admin = AdminClient(kafka.client_config("plaintext"))
    # the runbook reads the platform's two topics; they may exist already (other tests)
    admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1) for t in (topic, "reminders")])
    left_behind(kafka, group, topic)
    inv = inventory(tmp_path, kube, kafka, "todo", "sync", "external")
    result = run_runbook(inv, "-e", json.dumps({"lag_groups": [group]}), runbook=LAG_RUNBOOK)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert group in result.stdout
    admin.delete_consumer_groups([group], request_timeout=60)[group].result()
