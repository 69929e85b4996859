"""The test bed's Kubernetes API is real: kube-apiserver with etcd, controllers and kwok nodes.

A Deployment becomes Available on the fake nodes; a ServiceMonitor is accepted once its upstream CRD
is installed, and one with an unknown or mistyped field is rejected by server-side validation.
"""

from __future__ import annotations

import json
import uuid

import pytest
from testbed import gobuild
from testbed.core import ComponentError

pytestmark = pytest.mark.testbed

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: smoke
  namespace: {ns}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: smoke}}
  template:
    metadata:
      labels: {{app: smoke}}
    spec:
      containers:
        - name: app
          image: registry.invalid/smoke:1
          ports:
            - containerPort: 8080
"""

SERVICE_MONITOR = """apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {name}
  namespace: {ns}
spec:
  selector:
    matchLabels: {{app: smoke}}
  endpoints:
    - port: http
      path: /metrics
      {extra}
"""


@pytest.fixture
def namespace(kube):
    ns = f"smoke-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", ns)
    yield ns
    kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_apiserver_is_the_pinned_build_and_has_kwok_nodes(kube):
    version = json.loads(kube.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == gobuild.KUBERNETES_VERSION
    nodes = json.loads(kube.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert len(nodes) >= 2
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]


def test_deployment_becomes_available_on_kwok_nodes(kube, namespace):
    kube.kubectl("apply", "-f", "-", input=DEPLOYMENT.format(ns=namespace))
    kube.kubectl(
        "wait", "-n", namespace, "deployment/smoke", "--for=condition=Available", "--timeout=120s",
        timeout=150,
    )  # fmt: skip
    deployment = kube.kubectl("get", "-n", namespace, "deployment/smoke", "-o", "json").stdout
    status = json.loads(deployment)["status"]
    assert status["availableReplicas"] == 2
    pods = json.loads(kube.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    assert len(pods) == 2
    assert all(p["spec"].get("nodeName") for p in pods), "the scheduler placed every pod on a node"


def test_servicemonitor_needs_its_crd_and_is_validated(kube, namespace):
    good = SERVICE_MONITOR.format(name="smoke", ns=namespace, extra="interval: 30s")
    # before the CRD is installed the kind is unknown (unless an earlier test installed it)
    crds = kube.kubectl("get", "crd", "-o", "name").stdout
    if "servicemonitors.monitoring.coreos.com" not in crds:
        refused = kube.kubectl("apply", "-f", "-", input=good, check=False)
        assert refused.returncode != 0
        assert "servicemonitor" in refused.stderr.lower()

    names = kube.install_crds(["prometheus-operator/monitoring.coreos.com_servicemonitors.yaml"])
    assert names == ["servicemonitors.monitoring.coreos.com"]

    kube.kubectl("apply", "--server-side", "-f", "-", input=good)
    stored = json.loads(kube.kubectl("get", "-n", namespace, "servicemonitor/smoke", "-o", "json").stdout)
    assert stored["spec"]["endpoints"][0]["interval"] == "30s"

    unknown = SERVICE_MONITOR.format(name="unknown", ns=namespace, extra="intervall: 30s")
    refused = kube.kubectl("create", "--validate=strict", "-f", "-", input=unknown, check=False)
    assert refused.returncode != 0
    assert "unknown field" in refused.stderr and "intervall" in refused.stderr

    mistyped = SERVICE_MONITOR.format(name="mistyped", ns=namespace, extra="interval: 30 seconds")
    refused = kube.kubectl("create", "-f", "-", input=mistyped, check=False)
    assert refused.returncode != 0
    assert "interval" in refused.stderr  # the CRD's pattern for durations rejects it

    listed = kube.kubectl("get", "servicemonitors", "-n", namespace, "-o", "name").stdout.split()
    assert listed == ["servicemonitor.monitoring.coreos.com/smoke"]


def test_install_crds_rejects_a_missing_path(kube):
    with pytest.raises(ComponentError, match="no CRD file"):
        kube.install_crds(["prometheus-operator/does-not-exist.yaml"])
