"""kwok provisions volumes on the test bed's cluster (tests/testbed/kwok-stages/volume.yaml): a
StatefulSet whose claims name a storage class with an external provisioner (as every cloud's CSI
class does) gets its volumes bound and its pods Ready, and the volumes go when the claims go."""

from __future__ import annotations

import json
import uuid

import pytest
from testbed.polling import eventually

pytestmark = pytest.mark.testbed

STATEFULSET = """apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: {name}
provisioner: csi.example.test
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: Namespace
metadata:
  name: {name}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: data
  namespace: {name}
spec:
  replicas: 2
  serviceName: data
  selector:
    matchLabels: {{app: data}}
  template:
    metadata:
      labels: {{app: data}}
    spec:
      containers:
        - name: app
          image: registry.invalid/data:1
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        storageClassName: {name}
        resources:
          requests:
            storage: 3Gi
"""


def _claims(kube, name: str) -> list[dict]:
    return json.loads(kube.kubectl("get", "pvc", "-n", name, "-o", "json").stdout)["items"]


def _volumes(kube, name: str) -> list[dict]:
    items = json.loads(kube.kubectl("get", "pv", "-o", "json").stdout)["items"]
    return [v for v in items if v["spec"].get("storageClassName") == name]


def test_claims_of_an_external_provisioner_are_bound_and_released(kube):
    name = f"vol-{uuid.uuid4().hex[:8]}"
    kube.kubectl("apply", "-f", "-", input=STATEFULSET.format(name=name))
    try:
        kube.kubectl(
            "rollout", "status", "-n", name, "statefulset/data", "--timeout=120s", timeout=150, check=False
        )
        claims = _claims(kube, name)
        assert sorted(c["status"].get("phase") for c in claims) == ["Bound", "Bound"], [
            (c["metadata"]["name"], c["status"]) for c in claims
        ]
        volumes = _volumes(kube, name)
        assert sorted(v["status"]["phase"] for v in volumes) == ["Bound", "Bound"]
        assert {v["spec"]["capacity"]["storage"] for v in volumes} == {"3Gi"}
        assert {v["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] for v in volumes} == {
            "csi.example.test"
        }
        sts = json.loads(kube.kubectl("get", "statefulset", "-n", name, "data", "-o", "json").stdout)
        assert sts["status"].get("readyReplicas") == 2, sts["status"]
    finally:
        kube.kubectl("delete", "namespace", name, "--wait=true", timeout=180, check=False)

    # Reclaim policy Delete: the released volumes are deleted, as a provisioner would.
    def released_deleted() -> bool:
        left = _volumes(kube, name)
        assert not left, f"volumes still there: {[v['metadata']['name'] for v in left]}"
        return True

    eventually(released_deleted, "the released volumes deleted", within=60, interval=2)
    kube.kubectl("delete", "storageclass", name, check=False)
