"""metrics-server per inventory, sent to the test bed's API server: kind, minikube and OKE (no
metrics-server of their own, so HPAs read <unknown>) get every object, and the API server accepts
them in a server-side dry run; AKS and GKE, which run their own, get none.

A dry run, not an apply: no container runs on kwok nodes, so a real v1beta1.metrics.k8s.io
APIService would stay unavailable and break API discovery for everything else on the cluster."""

from __future__ import annotations

import json
import re

import pytest
from deploy_support import ENVIRONMENTS, run, tool_env

pytestmark = [pytest.mark.testbed, pytest.mark.timeout(1800)]

TASK = "Ensure metrics-server serves the resource metrics API"
INSTALLED = {"kind": True, "minikube": True, "oke": True, "aks": False, "gke": False}
OBJECTS = [
    ("ServiceAccount", "metrics-server"),
    ("ClusterRole", "system:aggregated-metrics-reader"),
    ("ClusterRole", "system:metrics-server"),
    ("ClusterRoleBinding", "system:metrics-server"),
    ("RoleBinding", "metrics-server-auth-reader"),
    ("ClusterRoleBinding", "metrics-server:system:auth-delegator"),
    ("Service", "metrics-server"),
    ("Deployment", "metrics-server"),
    ("APIService", "v1beta1.metrics.k8s.io"),
]


def task_result(output: str) -> dict:
    """The module result printed after `changed: [host] => ` (ANSIBLE_CALLBACK_RESULT_FORMAT=json)."""
    start = output.index("=> ") + 3
    return json.JSONDecoder().raw_decode(output[start:].lstrip())[0]


def task_output(stdout: str, task: str) -> str:
    """The lines ansible-playbook printed for one task (up to the next TASK or PLAY header)."""
    match = re.search(rf"^TASK \[[^\]]*{re.escape(task)}\].*?(?=^TASK |^PLAY |\Z)", stdout, flags=re.M | re.S)
    assert match, f"task {task!r} did not run\n{stdout[-4000:]}"
    return match.group(0)


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_metrics_server_where_the_platform_has_none(kube, env_name):
    env = dict(tool_env(kube), ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    args = [
        "ansible-playbook", "playbooks/monitoring.yml", "-i", f"inventories/{env_name}",
        "--tags", "monitoring_metrics_server", "--check", "--diff", "-v",
        "-e", f"cluster_kubeconfig={kube.kubeconfig}", "-e", f"cluster_context={kube.context}",
    ]  # fmt: skip
    result = run(args, env)
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    output = task_output(result.stdout, TASK)
    if not INSTALLED[env_name]:
        assert re.search(r"^skipping: ", output, flags=re.M), output[-3000:]
        return
    # In check mode the module sends each object as a server-side dry run and prints what the
    # API server answered: it admitted every one of them.
    assert re.search(r"^changed: ", output, flags=re.M), output[-3000:]
    answered = task_result(output)["result"]["results"]
    objects = {(o["result"]["kind"], o["result"]["metadata"]["name"]): o["result"] for o in answered}
    assert sorted(objects) == sorted(OBJECTS)
    (container,) = objects["Deployment", "metrics-server"]["spec"]["template"]["spec"]["containers"]
    assert ("--kubelet-insecure-tls" in container["args"]) == (env_name in ("kind", "minikube"))
    # Nothing was created for real.
    found = kube.kubectl("get", "apiservice", "v1beta1.metrics.k8s.io", "--ignore-not-found", "-o", "name")
    assert found.stdout.strip() == ""
