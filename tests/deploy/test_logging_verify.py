"""The logging role's verify phase against a real StatefulSet on the test bed's API server (kwok
nodes mark its pods Running and Ready): it passes once the replicas are ready, and it stops
within logging_wait_timeout, saying what it saw, when they never become ready. StatefulSets
report no conditions, so a wait on a `Ready` condition can only time out."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml
from deploy_support import run, tool_env

pytestmark = [pytest.mark.testbed, pytest.mark.timeout(900)]

TIMEOUT = 40


def statefulset(name: str, namespace: str, *, schedulable: bool) -> dict:
    spec: dict = {
        # kwok's nodes may carry its taint; the pods must land on them.
        "tolerations": [{"operator": "Exists"}],
        "containers": [{"name": "loki", "image": "registry.k8s.io/pause:3.10"}],
    }
    if not schedulable:
        spec["nodeSelector"] = {"todo-platform.test/no-such-node": "true"}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


@pytest.fixture
def namespace(kube):
    name = f"logging-verify-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def verify(kube, tmp_path, namespace: str, release: str):
    """Run roles/logging/tasks/verify.yml as the role runs it (kind environment: one replica)."""
    playbook = tmp_path / "verify.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Verify the logging stack",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                    "module_defaults": {
                        "group/kubernetes.core.k8s": {"kubeconfig": kube.kubeconfig, "context": kube.context}
                    },
                    "tasks": [
                        {
                            "name": "Run the verify phase of the logging role",
                            "ansible.builtin.include_role": {"name": "logging", "tasks_from": "verify"},
                        }
                    ],
                }
            ]
        )
    )
    extra = {
        "logging_environment": "kind",
        "logging_namespace": namespace,
        "logging_loki_release_name": release,
        "logging_wait_timeout": TIMEOUT,
    }
    env = tool_env(kube)
    return run(
        ["ansible-playbook", str(playbook), "-i", "localhost,", "-e", json.dumps(extra)],
        env,
        timeout=TIMEOUT * 4 + 120,
    )


def test_verify_passes_when_the_loki_replicas_are_ready(kube, namespace, tmp_path):
    kube.kubectl("apply", "-f", "-", input=json.dumps(statefulset("loki", namespace, schedulable=True)))
    result = verify(kube, tmp_path, namespace, "loki")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    ready = kube.kubectl(
        "-n", namespace, "get", "statefulset", "loki", "-o", "jsonpath={.status.readyReplicas}"
    )
    assert ready.stdout == "1"


def test_verify_stops_within_the_timeout_and_says_why(kube, namespace, tmp_path):
    kube.kubectl("apply", "-f", "-", input=json.dumps(statefulset("loki", namespace, schedulable=False)))
    result = verify(kube, tmp_path, namespace, "loki")
    assert result.returncode != 0
    assert f"not ready after {TIMEOUT} s" in result.stdout, result.stdout[-4000:]
    assert "0 ready" in result.stdout and "describe statefulset loki" in result.stdout


def test_verify_names_a_missing_release(kube, namespace, tmp_path):
    result = verify(kube, tmp_path, namespace, "no-such-loki")
    assert result.returncode != 0
    assert "There is no StatefulSet no-such-loki" in result.stdout, result.stdout[-4000:]
