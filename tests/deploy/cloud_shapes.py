"""The cluster each inventory's guide (docs/guides/<env>.md) creates, as kwok node shapes.

The node count and the machine come from the guide's own create command, so a guide that changes
its cluster changes the test bed's cluster with it; the machine's size and the kubelet's
reservations come from the tables below.

Allocatable = capacity - kube/system reserved - hard eviction threshold (100Mi everywhere):

* GKE documents its reservations: CPU 6% of the first core, 1% of the second, 0.5% of the next
  two, 0.25% above; memory 25% of the first 4 GiB, 20% of the next 4, 10% of the next 8, 6% of
  the next 112, 2% above.
* AKS (Kubernetes 1.29+): CPU 60m for 1 core, 100m for 2, 140m for 4, 180m for 8; memory
  20 MB per allowed pod + 50 MB (at most 25% of the machine). Azure CNI (the guide's
  ``--network-plugin azure``) allows 30 pods per node by default.
* OKE's reservations are not published as a formula; the GKE one is used (an assumption).
  With VCN-native pod networking (the guide's ``OCI_VCN_IP_NATIVE``) the pods per node are bounded
  by the shape's secondary VNICs, 31 each.
* kind and minikube run the kubelet without reservations: allocatable is what Docker gives them.
"""

from __future__ import annotations

import re

from deploy_support import ROOT
from testbed.kube_shapes import NodeShape

GUIDES = ROOT / "docs" / "guides"
MI = 1024 * 1024

# vCPUs, memory (MiB), architecture of the machines the guides name.
MACHINES = {
    "e2-standard-2": (2, 8 * 1024, "amd64"),
    "Standard_D2s_v5": (2, 8 * 1024, "amd64"),
}


def _tiered(amount: float, tiers: list[tuple[float, float]], rest: float) -> float:
    reserved = 0.0
    for size, rate in tiers:
        part = min(amount, size)
        reserved += part * rate
        amount -= part
        if amount <= 0:
            return reserved
    return reserved + amount * rest


def gke_reserved(cpus: int, mem_mib: int) -> tuple[int, int]:
    """(millicores, MiB) kept back by GKE's kubelet reservations, eviction threshold included."""
    cpu = _tiered(cpus * 1000, [(1000, 0.06), (1000, 0.01), (2000, 0.005)], 0.0025)
    mem = _tiered(mem_mib, [(4096, 0.25), (4096, 0.20), (8192, 0.10), (112 * 1024, 0.06)], 0.02)
    return int(round(cpu)), int(round(mem)) + 100


def aks_reserved(cpus: int, mem_mib: int, max_pods: int) -> tuple[int, int]:
    cpu = {1: 60, 2: 100, 4: 140, 8: 180}[cpus]
    mem = min((20 * max_pods + 50) * 1000 * 1000 / MI, mem_mib * 0.25)
    return cpu, int(round(mem)) + 100


def _guide(env: str) -> str:
    return (GUIDES / f"{env}.md").read_text()


def _shell_value(text: str, raw: str) -> str:
    """A command argument of the guide with its shell variables (``VAR=value`` lines) filled in."""
    raw = raw.strip('"')
    for name in re.findall(r"\$\{?([A-Z_]+)\}?", raw):
        m = re.search(rf"^{name}=(\S+)$", text, re.MULTILINE)
        if m:
            raw = re.sub(rf"\$\{{?{name}\}}?", m.group(1).strip('"'), raw)
    return raw


def _find(pattern: str, text: str, env: str, what: str) -> re.Match:
    match = re.search(pattern, text)
    if not match:
        raise AssertionError(
            f"docs/guides/{env}.md: cannot find the {what} of the cluster it creates ({pattern})"
        )
    return match


def shape(env: str) -> NodeShape:
    """The nodes of the cluster docs/guides/<env>.md creates."""
    text = _guide(env)
    if env in ("kind", "minikube"):
        if env == "kind":
            m = _find(r"(\d+) CPU / (\d+) GB", text, env, "Docker CPU/memory")
            cpus, mem = int(m.group(1)), int(m.group(2)) * 1024
        else:
            cpus = int(_find(r"--cpus (\d+)", text, env, "CPU count").group(1))
            mem = int(_find(r"--memory (\d+)", text, env, "memory").group(1))
        return NodeShape(
            count=1, cpu=str(cpus), memory=f"{mem}Mi", allocatable_cpu=str(cpus),
            allocatable_memory=f"{mem}Mi", storage_class="standard", prefix=env,
            notes=f"one node, {cpus} CPU / {mem // 1024} GiB for Docker, no kubelet reservations",
        )  # fmt: skip
    if env == "gke":
        count = int(_find(r"--num-nodes (\d+)", text, env, "node count").group(1))
        machine = _find(r"--machine-type (\S+)", text, env, "machine type").group(1)
        zone = _shell_value(text, _find(r"--zone (\S+)", text, env, "zone").group(1))
        cpus, mem, arch = MACHINES[machine]
        r_cpu, r_mem = gke_reserved(cpus, mem)
        return NodeShape(
            count=count, cpu=str(cpus), memory=f"{mem}Mi", allocatable_cpu=f"{cpus * 1000 - r_cpu}m",
            allocatable_memory=f"{mem - r_mem}Mi", arch=arch, instance_type=machine, zones=(zone,),
            storage_class="standard-rwo", storage_provisioner="pd.csi.storage.gke.io", prefix="gke",
            notes=f"{count} x {machine}, zonal ({zone}), GKE reservations",
        )  # fmt: skip
    if env == "aks":
        count = int(_find(r"--node-count (\d+)", text, env, "node count").group(1))
        machine = _find(r"--node-vm-size (\S+)", text, env, "VM size").group(1)
        max_pods = int(m.group(1)) if (m := re.search(r"--max-pods (\d+)", text)) else 30
        cpus, mem, arch = MACHINES[machine]
        r_cpu, r_mem = aks_reserved(cpus, mem, max_pods)
        # Nodes are labelled <location>-<zone>; without --zones they are spread over fault domains
        # and labelled zone "0".
        location = _shell_value(text, _find(r"az group create .*-l (\S+)", text, env, "location").group(1))
        zones = (
            tuple(f"{location}-{z}" for z in m.group(1).split())
            if (m := re.search(r"--zones ([\d ]+)", text))
            else ("0",)
        )
        return NodeShape(
            count=count, cpu=str(cpus), memory=f"{mem}Mi", allocatable_cpu=f"{cpus * 1000 - r_cpu}m",
            allocatable_memory=f"{mem - r_mem}Mi", pods=max_pods, arch=arch, instance_type=machine,
            zones=zones, storage_class="managed-csi", storage_provisioner="disk.csi.azure.com", prefix="aks",
            notes=f"{count} x {machine}, {max_pods} pods per node (Azure CNI), AKS reservations",
        )  # fmt: skip
    if env == "oke":
        count = int(_find(r"--size (\d+)", text, env, "node pool size").group(1))
        m = _find(r'"ocpus":\s*(\d+),\s*"memoryInGBs":\s*(\d+)', text, env, "A1 shape config")
        ocpus, mem = int(m.group(1)), int(m.group(2)) * 1024
        cpus = ocpus  # an Ampere A1 OCPU is one core, seen by the kubelet as one CPU
        r_cpu, r_mem = gke_reserved(cpus, mem)
        # VCN-native pod networking: 31 pod addresses per secondary VNIC; an A1 node has one VNIC per
        # OCPU, at least two, the first being the node's own.
        native = "OCI_VCN_IP_NATIVE" in text
        pods = (max(ocpus, 2) - 1) * 31 if native else 110
        return NodeShape(
            count=count, cpu=str(cpus), memory=f"{mem}Mi", allocatable_cpu=f"{cpus * 1000 - r_cpu}m",
            allocatable_memory=f"{mem - r_mem}Mi", pods=pods, arch="arm64",
            instance_type="VM.Standard.A1.Flex", zones=tuple(f"AD-{i}" for i in (1, 2, 3))[:count],
            storage_class="oci-bv",
            storage_provisioner="blockvolume.csi.oraclecloud.com", prefix="oke",
            notes=f"{count} x VM.Standard.A1.Flex {ocpus} OCPU / {mem // 1024} GB, {pods} pods per node"
            + (" (VCN-native)" if native else "") + ", reservations as on GKE",
        )  # fmt: skip
    raise KeyError(env)
