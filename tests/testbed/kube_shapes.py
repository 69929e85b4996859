"""kwok nodes shaped like a cloud's node pool, on a kwok cluster of their own.

:class:`NodeShape` says what the nodes of one inventory's cluster look like (count, capacity and
allocatable CPU/memory/pods, architecture, instance type, zones, default storage class);
:class:`ShapedKube` is a :class:`testbed.kube.Kube` started without kwokctl's default nodes (whose
allocatable is 1000 CPU / 1 TiB) whose :meth:`ShapedKube.reshape` replaces every node by the nodes
of a shape.  kwok keeps the status a node is created with (its node-initialize stage writes the
given allocatable and capacity back), so the scheduler sees exactly these sizes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from testbed.kube import Kube


@dataclass(frozen=True)
class NodeShape:
    """The worker nodes of one cluster."""

    count: int
    cpu: str  # capacity
    memory: str
    allocatable_cpu: str
    allocatable_memory: str
    pods: int = 110
    arch: str = "amd64"
    instance_type: str = ""
    zones: tuple[str, ...] = ()
    storage_class: str = "standard"
    storage_provisioner: str = "kwok.x-k8s.io/volume"
    prefix: str = "node"
    notes: str = field(default="", compare=False)

    def node_names(self) -> list[str]:
        return [f"{self.prefix}-{i}" for i in range(self.count)]

    def nodes(self) -> list[dict[str, Any]]:
        out = []
        for i, name in enumerate(self.node_names()):
            labels = {
                "kubernetes.io/arch": self.arch,
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "type": "kwok",
            }
            if self.instance_type:
                labels["node.kubernetes.io/instance-type"] = self.instance_type
            if self.zones:
                labels["topology.kubernetes.io/zone"] = self.zones[i % len(self.zones)]
            out.append({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"}},
                "status": {
                    "capacity": {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods)},
                    "allocatable": {
                        "cpu": self.allocatable_cpu,
                        "memory": self.allocatable_memory,
                        "pods": str(self.pods),
                    },
                    "nodeInfo": {"architecture": self.arch, "operatingSystem": "linux"},
                },
            })  # fmt: skip
        return out

    def storage_class_object(self) -> dict[str, Any]:
        return {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": self.storage_class,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": self.storage_provisioner,
            "volumeBindingMode": "WaitForFirstConsumer",
        }


class ShapedKube(Kube):
    """A kwok cluster of its own (next to the session's ``kube``) whose nodes are set by a shape."""

    name = "kube-shapes"

    def __init__(self, run: Any = None) -> None:
        super().__init__(run, nodes=0)
        self.cluster = f"{self.cluster}-shapes"
        self.shape: NodeShape | None = None

    def reshape(self, shape: NodeShape) -> None:
        """Delete every node and pod, then create the shape's nodes and its default StorageClass."""
        self.kubectl(
            "delete", "pods", "--all", "--all-namespaces", "--force", "--grace-period=0", timeout=180
        )
        self.kubectl("delete", "nodes", "--all", "--wait=true", timeout=180)
        self.kubectl("delete", "storageclasses", "--all", timeout=60)
        objects = [*shape.nodes(), shape.storage_class_object()]
        self.kubectl("create", "-f", "-", input="\n".join(json.dumps(o) for o in objects))
        names = [f"node/{n}" for n in shape.node_names()]
        self.kubectl("wait", "--for=condition=Ready", "--timeout=60s", *names, timeout=90)
        self.shape = shape

    def info(self) -> dict[str, Any]:
        return {**super().info(), "shape": self.shape.__dict__ if self.shape else None, "pid": os.getpid()}
