# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Capacity arithmetic of the cluster_capacity module (pure logic, no cluster access).

A workload is ``replicas`` pods of one shape: ``cpu`` in millicores and ``memory`` in bytes
requested per pod, ``distinct_nodes`` when a required pod anti-affinity on the node hostname keeps
its replicas on different nodes, ``per_node`` for a DaemonSet (one pod on every node).  Workloads
come from rendered manifests (:func:`workloads_from_manifests`) or are given directly
(:func:`normalize_workload`).  :func:`check` compares them with the nodes' allocatable capacity
minus what other pods already request, and returns a report with the problems in words.
"""

from __future__ import annotations

import math
import re

HOSTNAME_KEY = "kubernetes.io/hostname"
# Pods of these phases no longer hold their requests.
DONE_PHASES = ("Succeeded", "Failed")
_BLOCKING_TAINTS = ("NoSchedule", "NoExecute")

_SUFFIX = {
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0,
    "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}  # fmt: skip
_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
)
# Objects the Prometheus operator turns into StatefulSets (DaemonSet for an agent in DaemonSet mode).
OPERATOR_KINDS = ("Prometheus", "PrometheusAgent", "Alertmanager")
# The operator's flags for the config-reloader container it adds to those pods (the chart sets them
# on the operator Deployment from prometheusOperator.prometheusConfigReloader.resources).
_RELOADER_FLAGS = {"cpu": "--config-reloader-cpu-request=", "memory": "--config-reloader-memory-request="}


class CapacityError(ValueError):
    """Input the capacity check cannot read (message says what to fix)."""


def quantity(value, what="quantity"):
    """A Kubernetes quantity ('250m', '1.5', '512Mi', 2) as a float in base units."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, bool):
        raise CapacityError(f"{what}: {value!r} is not a Kubernetes quantity")
    if isinstance(value, (int, float)):
        return float(value)
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise CapacityError(f"{what}: {value!r} is not a Kubernetes quantity (e.g. 250m, 2, 512Mi, 4Gi)")
    try:
        return float(match.group(1)) * _SUFFIX[match.group(2) or ""]
    except (ValueError, OverflowError):
        raise CapacityError(f"{what}: {value!r} is not a Kubernetes quantity (e.g. 250m, 2, 512Mi)") from None


def millicores(value, what="cpu"):
    return int(math.ceil(quantity(value, what) * 1000 - 1e-6))


def mem_bytes(value, what="memory"):
    return int(math.ceil(quantity(value, what) - 1e-6))


def fmt_cpu(millis):
    return f"{millis / 1000:.2f}".rstrip("0").rstrip(".") + " CPU"


def fmt_mem(nbytes):
    return f"{nbytes / 2**30:.2f} GiB"


def _requests(container):
    """(cpu, memory) requested by a container; a resource with a limit and no request requests
    its limit (the API server's defaulting)."""
    resources = (container or {}).get("resources") or {}
    req = dict(resources.get("limits") or {}, **(resources.get("requests") or {}))
    name = (container or {}).get("name", "?")
    return millicores(req.get("cpu"), f"{name} cpu request"), mem_bytes(
        req.get("memory"), f"{name} memory request"
    )


def pod_requests(pod_spec):
    """Effective (cpu millicores, memory bytes) a pod asks the scheduler for: its containers plus
    sidecar init containers (restartPolicy Always), or more if a plain init container with the
    sidecars started before it needs more (the effective init request); plus the pod overhead."""
    pod_spec = pod_spec or {}
    cpu = mem = 0
    for c in pod_spec.get("containers") or []:
        c_cpu, c_mem = _requests(c)
        cpu, mem = cpu + c_cpu, mem + c_mem
    init_cpu = init_mem = 0
    side_cpu = side_mem = 0  # sidecars started so far: they keep running beside later init containers
    for c in pod_spec.get("initContainers") or []:
        c_cpu, c_mem = _requests(c)
        if c.get("restartPolicy") == "Always":
            side_cpu, side_mem = side_cpu + c_cpu, side_mem + c_mem
        else:
            init_cpu, init_mem = max(init_cpu, side_cpu + c_cpu), max(init_mem, side_mem + c_mem)
    cpu, mem = cpu + side_cpu, mem + side_mem
    overhead = pod_spec.get("overhead") or {}
    return (
        max(cpu, init_cpu) + millicores(overhead.get("cpu")),
        max(mem, init_mem) + mem_bytes(overhead.get("memory")),
    )


def _needs_distinct_nodes(pod_spec):
    """Required pod anti-affinity on the hostname: two replicas never share a node (the charts'
    terms select their own pods, which is what makes the rule bite)."""
    terms = (((pod_spec or {}).get("affinity") or {}).get("podAntiAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or []
    return any(t.get("topologyKey") == HOSTNAME_KEY for t in terms)


def normalize_workload(raw, sidecar=None):
    """A workload given directly: name, replicas, cpu, memory, distinct_nodes, per_node, and
    dapr_sidecar (the pods get the Dapr sidecar: ``sidecar``'s requests are added)."""
    if not isinstance(raw, dict) or not raw.get("name"):
        raise CapacityError(f"workload {raw!r}: needs at least a name (and replicas, cpu, memory)")
    name = str(raw["name"])
    try:
        replicas = int(raw.get("replicas", 1))
    except (TypeError, ValueError):
        raise CapacityError(f"workload {name}: replicas {raw.get('replicas')!r} is not a number") from None
    if replicas < 0:
        raise CapacityError(f"workload {name}: replicas must not be negative")
    cpu = millicores(raw.get("cpu"), f"workload {name} cpu")
    mem = mem_bytes(raw.get("memory"), f"workload {name} memory")
    if raw.get("dapr_sidecar"):
        cpu += millicores((sidecar or {}).get("cpu"), "sidecar cpu")
        mem += mem_bytes((sidecar or {}).get("memory"), "sidecar memory")
    return {
        "name": name,
        "replicas": replicas,
        "cpu": cpu,
        "memory": mem,
        "distinct_nodes": bool(raw.get("distinct_nodes", False)),
        "per_node": bool(raw.get("per_node", False)),
    }


def _count(value, what):
    try:
        return int(value if value is not None else 1)
    except (TypeError, ValueError):
        raise CapacityError(f"{what}: {value!r} is not a number") from None


def _reloader_requests(manifests):
    """Requests of the operator's config-reloader container, from the operator Deployment's
    --config-reloader-*-request flags among the manifests (0 or absent: the operator sets none)."""
    for obj in manifests or []:
        if not isinstance(obj, dict) or obj.get("kind") != "Deployment":
            continue
        pod_spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        for c in pod_spec.get("containers") or []:
            found = {}
            for arg in c.get("args") or []:
                for key, flag in _RELOADER_FLAGS.items():
                    if str(arg).startswith(flag):
                        found[key] = str(arg).split("=", 1)[1]
            if found:
                return found
    return {}


def _operator_workload(obj, reloader):
    """The pods the Prometheus operator makes of a Prometheus, PrometheusAgent or Alertmanager:
    the main container (spec.resources), the config-reloader sidecar and its init container (the
    requests the operator was given, see _reloader_requests), the Thanos sidecar if any."""
    kind = obj["kind"]
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    name = f"{meta.get('namespace') or '-'}/{meta.get('name', '?')}"
    # Without the operator's Deployment among the manifests (operator installed separately) its
    # reloader requests are unknown here: only spec.resources is counted.
    reloader_c = {"name": "config-reloader", "resources": {"requests": dict(reloader)}}
    containers = [{"name": kind.lower(), "resources": spec.get("resources") or {}}, reloader_c]
    if kind == "Prometheus" and spec.get("thanos") is not None:
        thanos = spec.get("thanos") or {}
        containers.append({"name": "thanos-sidecar", "resources": thanos.get("resources") or {}})
    init = [dict(reloader_c, name="init-config-reloader")]
    cpu, mem = pod_requests({"containers": containers, "initContainers": init})
    replicas = _count(spec.get("replicas"), f"{kind} {name} spec.replicas")
    if kind != "Alertmanager":
        replicas *= _count(spec.get("shards"), f"{kind} {name} spec.shards")
    return {
        "name": name,
        "replicas": replicas,
        "cpu": cpu,
        "memory": mem,
        "distinct_nodes": _needs_distinct_nodes(spec),
        "per_node": kind == "PrometheusAgent" and spec.get("mode") == "DaemonSet",
    }


def workloads_from_manifests(manifests, sidecar=None):
    """Workloads of rendered objects (Deployments, StatefulSets, ReplicaSets, DaemonSets, and the
    Prometheus operator's Prometheus, PrometheusAgent and Alertmanager).

    ``sidecar`` ({'cpu': .., 'memory': ..}) is added to pods annotated ``dapr.io/enabled: "true"``
    unless they carry their own ``dapr.io/sidecar-{cpu,memory}-request`` annotations.  Jobs (chart
    hooks, migrations) run to completion and are not counted."""
    sidecar = sidecar or {}
    reloader = None
    out = []
    for obj in manifests or []:
        if not isinstance(obj, dict):
            continue
        kind = obj.get("kind")
        if kind in OPERATOR_KINDS and str(obj.get("apiVersion", "")).startswith("monitoring.coreos.com/"):
            if reloader is None:
                reloader = _reloader_requests(manifests)
            out.append(_operator_workload(obj, reloader))
            continue
        if kind not in ("Deployment", "StatefulSet", "ReplicaSet", "DaemonSet"):
            continue
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        template = spec.get("template") or {}
        pod_spec = template.get("spec") or {}
        cpu, mem = pod_requests(pod_spec)
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        if str(annotations.get("dapr.io/enabled", "")).lower() == "true":
            cpu += millicores(
                annotations.get("dapr.io/sidecar-cpu-request", sidecar.get("cpu")), "sidecar cpu"
            )
            mem += mem_bytes(
                annotations.get("dapr.io/sidecar-memory-request", sidecar.get("memory")), "sidecar memory"
            )
        name = f"{meta.get('namespace') or '-'}/{meta.get('name', '?')}"
        out.append(
            {
                "name": name,
                "replicas": _count(spec.get("replicas", 1), f"{kind} {name} spec.replicas"),
                "cpu": cpu,
                "memory": mem,
                "distinct_nodes": _needs_distinct_nodes(pod_spec),
                "per_node": kind == "DaemonSet",
            }
        )
    return out


def schedulable_nodes(nodes):
    """Nodes a pod without tolerations can land on, with their allocatable capacity."""
    out = []
    for node in nodes or []:
        spec = node.get("spec") or {}
        if spec.get("unschedulable"):
            continue
        if any(t.get("effect") in _BLOCKING_TAINTS for t in spec.get("taints") or []):
            continue
        meta = node.get("metadata") or {}
        alloc = (node.get("status") or {}).get("allocatable") or {}
        name = meta.get("name", "?")
        out.append(
            {
                "name": name,
                "cpu": millicores(alloc.get("cpu"), f"node {name} allocatable cpu"),
                "memory": mem_bytes(alloc.get("memory"), f"node {name} allocatable memory"),
                "pods": int(quantity(alloc.get("pods", 110), f"node {name} allocatable pods")),
                "zone": (meta.get("labels") or {}).get("topology.kubernetes.io/zone", ""),
            }
        )
    return out


def _other_usage(pods, node_names, stack_namespaces, stack_labels=None):
    """Requests of running pods that are not part of the stack, per node.  A pod is the stack's when
    it runs in one of ``stack_namespaces`` or carries all of ``stack_labels`` (the stack's pods in
    a shared namespace, such as metrics-server in kube-system)."""
    used = {n: [0, 0, 0] for n in node_names}
    stack_labels = stack_labels or {}
    for pod in pods or []:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        if node not in used or meta.get("namespace") in stack_namespaces:
            continue
        labels = meta.get("labels") or {}
        if stack_labels and all(labels.get(k) == v for k, v in stack_labels.items()):
            continue
        if (pod.get("status") or {}).get("phase") in DONE_PHASES:
            continue
        cpu, mem = pod_requests(spec)
        used[node][0] += cpu
        used[node][1] += mem
        used[node][2] += 1
    return used


def _place(pods, free):
    """First fit decreasing; pods of a distinct-nodes workload go to different nodes.
    Returns the first pod that fits nowhere (name, cpu, memory) or None."""
    hosts = {name: set() for name in free}
    for name, cpu, mem, distinct in sorted(pods, key=lambda p: (-p[1], -p[2], p[0])):
        for node in sorted(free, key=lambda n: (-free[n][0], n)):
            f = free[node]
            if f[0] >= cpu and f[1] >= mem and f[2] >= 1 and not (distinct and name in hosts[node]):
                f[0], f[1], f[2] = f[0] - cpu, f[1] - mem, f[2] - 1
                hosts[node].add(name)
                break
        else:
            return name, cpu, mem
    return None


def _total_problems(rows, req, alloc, other, problems, culprits):
    """The cluster's totals against the requests (appends to ``problems`` and ``culprits``)."""
    free = {k: alloc[k] - other[k] for k in alloc}
    for key, short in (
        ("total_cpu", req["cpu"] > free["cpu"]),
        ("total_memory", req["memory"] > free["memory"]),
    ):
        if short:
            culprits += [r["name"] for r in sorted(rows, key=lambda r: (-r[key], r["name"]))[:3]]
    if req["cpu"] > free["cpu"]:
        problems.append(
            f"needs {fmt_cpu(req['cpu'])}, the cluster has {fmt_cpu(free['cpu'])} allocatable"
            + (f" left by other pods (of {fmt_cpu(alloc['cpu'])})" if other["cpu"] else "")
        )
    if req["memory"] > free["memory"]:
        problems.append(
            f"needs {fmt_mem(req['memory'])} memory, the cluster has {fmt_mem(free['memory'])} allocatable"
            + (f" left by other pods (of {fmt_mem(alloc['memory'])})" if other["memory"] else "")
        )
    if req["pods"] > free["pods"]:
        problems.append(f"needs {req['pods']} pods, the nodes allow {free['pods']} more")


def _node_problems(workloads, sched, used, to_place, problems, culprits):
    """Whether the per-node pods, then the other pods one by one, fit on the nodes."""
    daemons = [w for w in workloads if w["per_node"]]
    node_free = {}
    for node in sched:
        u = used[node["name"]]
        node_free[node["name"]] = [
            node["cpu"] - u[0] - sum(w["cpu"] for w in daemons),
            node["memory"] - u[1] - sum(w["memory"] for w in daemons),
            node["pods"] - u[2] - len(daemons),
        ]
    if any(v[0] < 0 or v[1] < 0 or v[2] < 0 for v in node_free.values()):
        problems.append("the per-node pods (DaemonSets) do not fit on every node")
        culprits += [w["name"] for w in daemons]
        return
    stuck = _place(to_place, node_free)
    if stuck:
        culprits.append(stuck[0])
        problems.append(
            f"a pod of {stuck[0]} ({fmt_cpu(stuck[1])}, {fmt_mem(stuck[2])}) fits on no node once "
            "the larger pods are placed: the totals fit but the nodes are too small or too few"
        )


def check(workloads, nodes, pods=None, stack_namespaces=(), stack_labels=None):
    """Compare the workloads' requests with the schedulable nodes; returns the report (``fits``,
    ``problems`` in words, totals and per-workload rows)."""
    sched = schedulable_nodes(nodes)
    count = len(sched)
    used = _other_usage(pods, [n["name"] for n in sched], set(stack_namespaces), stack_labels)
    rows = []
    req = {"cpu": 0, "memory": 0, "pods": 0}
    to_place = []
    for w in workloads:
        n = count if w["per_node"] else w["replicas"]
        rows.append(dict(w, pods=n, total_cpu=n * w["cpu"], total_memory=n * w["memory"]))
        req["cpu"] += n * w["cpu"]
        req["memory"] += n * w["memory"]
        req["pods"] += n
        if not w["per_node"]:
            to_place += [(w["name"], w["cpu"], w["memory"], w["distinct_nodes"])] * n
    alloc = {k: sum(node[k] for node in sched) for k in ("cpu", "memory", "pods")}
    other = {k: sum(u[i] for u in used.values()) for i, k in enumerate(("cpu", "memory", "pods"))}

    problems = []
    culprits = []  # the workloads whose settings would make the stack fit, most relevant first
    spread = [w for w in workloads if w["distinct_nodes"] and not w["per_node"] and w["replicas"] > count]
    culprits += [w["name"] for w in spread]
    for w in spread:
        problems.append(
            f"needs {w['replicas']} nodes for {w['name']}'s required anti-affinity (one replica per node), "
            f"the cluster has {count} schedulable node{'s' if count != 1 else ''}"
        )
    _total_problems(rows, req, alloc, other, problems, culprits)
    if not problems and count:
        _node_problems(workloads, sched, used, to_place, problems, culprits)
    if not count:
        problems.insert(0, "the cluster has no schedulable node (all cordoned or tainted NoSchedule)")
    return {
        "fits": not problems,
        "problems": problems,
        "culprits": list(dict.fromkeys(culprits)),
        "nodes": sched,
        "node_count": count,
        "allocatable": alloc,
        "other_requests": other,
        "requested": req,
        "workloads": rows,
    }


def summary(report):
    """One line: requested against allocatable."""
    r, a = report["requested"], report["allocatable"]
    return (
        f"{report['node_count']} nodes; requests {fmt_cpu(r['cpu'])} of {fmt_cpu(a['cpu'])}, "
        f"{fmt_mem(r['memory'])} of {fmt_mem(a['memory'])}, {r['pods']} pods of {a['pods']}"
    )


def advice(report, hints):
    """What to change, for the workloads a shortage names (``report['culprits']``): ``hints`` maps a
    workload name ('logging/loki') or its namespace ('logging') to the settings that size it."""
    out = []
    seen = set()
    for name in report.get("culprits") or []:
        hint = (hints or {}).get(name) or (hints or {}).get(name.split("/", 1)[0])
        if hint and (name, hint) not in seen:
            seen.add((name, hint))
            out.append(f"{name}: {hint}")
    return out
