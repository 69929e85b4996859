# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Capacity arithmetic of todo.platform.cluster_capacity (pure logic)."""

from __future__ import annotations

import pytest
from ansible_collections.todo.platform.plugins.module_utils.capacity import (
    CapacityError,
    advice,
    check,
    mem_bytes,
    millicores,
    normalize_workload,
    pod_requests,
    workloads_from_manifests,
)

GI = 2**30


def node(name, cpu="1930m", memory="6Gi", pods=110, **spec):
    return {
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": "z1"}},
        "spec": spec,
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": str(pods)}},
    }


def wl(name, replicas=1, cpu="100m", memory="128Mi", **kw):
    return normalize_workload(dict(name=name, replicas=replicas, cpu=cpu, memory=memory, **kw))


def statefulset(name, replicas, cpu, memory, anti=True, annotations=None):
    pod_spec = {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}
    if anti:
        pod_spec["affinity"] = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": name}}, "topologyKey": "kubernetes.io/hostname"}
                ]
            }
        }
    return {
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "logging"},
        "spec": {
            "replicas": replicas,
            "template": {"metadata": {"annotations": annotations or {}}, "spec": pod_spec},
        },
    }


@pytest.mark.parametrize(
    ("raw", "millis"), [("250m", 250), ("1", 1000), ("1.5", 1500), (2, 2000), ("100000u", 100), (None, 0)]
)
def test_cpu_quantities(raw, millis):
    assert millicores(raw) == millis


@pytest.mark.parametrize(
    ("raw", "nbytes"),
    [("512Mi", 512 * 2**20), ("1Gi", GI), ("1G", 10**9), ("6144Ki", 6144 * 1024), ("129e6", 129 * 10**6)],
)
def test_memory_quantities(raw, nbytes):
    assert mem_bytes(raw) == nbytes


def test_bad_quantity_says_what_to_fix():
    with pytest.raises(CapacityError, match="'lots' is not a Kubernetes quantity"):
        millicores("lots", "backend cpu")


def test_pod_requests_count_sidecar_init_containers_and_the_largest_plain_init():
    spec = {
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "50m"}}},
        ],
        "initContainers": [
            {"name": "setup", "resources": {"requests": {"cpu": "500m", "memory": "10Mi"}}},
            {
                "name": "proxy",
                "restartPolicy": "Always",
                "resources": {"requests": {"cpu": "10m", "memory": "20Mi"}},
            },
        ],
    }
    assert pod_requests(spec) == (500, 120 * 2**20)


def test_manifests_give_workloads_with_anti_affinity_daemonsets_and_dapr_sidecars():
    objs = [
        statefulset("loki", 3, "500m", "1Gi"),
        {
            "kind": "DaemonSet",
            "metadata": {"name": "alloy", "namespace": "logging"},
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "50m"}}}]}
                }
            },
        },
        statefulset("app", 2, "100m", "100Mi", anti=False, annotations={"dapr.io/enabled": "true"}),
        {"kind": "Job", "metadata": {"name": "hook"}, "spec": {"template": {"spec": {"containers": []}}}},
        {"kind": "ConfigMap", "metadata": {"name": "x"}},
        None,
    ]
    got = {w["name"]: w for w in workloads_from_manifests(objs, {"cpu": "50m", "memory": "64Mi"})}
    assert sorted(got) == ["logging/alloy", "logging/app", "logging/loki"]
    assert got["logging/loki"]["distinct_nodes"] and got["logging/loki"]["replicas"] == 3
    assert got["logging/alloy"]["per_node"]
    assert got["logging/app"]["cpu"] == 150 and got["logging/app"]["memory"] == 164 * 2**20
    assert not got["logging/app"]["distinct_nodes"]


def test_three_anti_affine_replicas_on_two_nodes_fail_with_the_node_count():
    loki = workloads_from_manifests([statefulset("loki", 3, "500m", "1Gi")])
    report = check(loki, [node("n1"), node("n2")])
    assert not report["fits"]
    assert report["problems"] == [
        "needs 3 nodes for logging/loki's required anti-affinity (one replica per node), "
        "the cluster has 2 schedulable nodes"
    ]
    assert check(loki, [node("n1"), node("n2"), node("n3")])["fits"]


def test_totals_over_allocatable_name_both_numbers():
    report = check(
        [wl("big", replicas=6, cpu="850m", memory="1Gi")], [node("n1", cpu="1900m"), node("n2", cpu="1900m")]
    )
    assert report["problems"] == ["needs 5.1 CPU, the cluster has 3.8 CPU allocatable"]
    assert report["requested"]["cpu"] == 5100 and report["allocatable"]["cpu"] == 3800


def test_other_pods_use_capacity_but_the_stacks_own_pods_do_not():
    pods = [
        {
            "metadata": {"namespace": "kube-system"},
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "dns", "resources": {"requests": {"cpu": "1500m"}}}],
            },
            "status": {"phase": "Running"},
        },
        {
            "metadata": {"namespace": "todo"},
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "backend", "resources": {"requests": {"cpu": "1500m"}}}],
            },
            "status": {"phase": "Running"},
        },
        {
            "metadata": {"namespace": "jobs"},
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "done", "resources": {"requests": {"cpu": "1500m"}}}],
            },
            "status": {"phase": "Succeeded"},
        },
    ]
    report = check([wl("todo/backend", cpu="1")], [node("n1", cpu="2")], pods, ["todo"])
    assert report["other_requests"]["cpu"] == 1500
    assert report["problems"] == [
        "needs 1 CPU, the cluster has 0.5 CPU allocatable left by other pods (of 2 CPU)"
    ]


def test_cordoned_and_tainted_nodes_do_not_count():
    nodes = [
        node("cp", taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
        node("cordoned", unschedulable=True),
        node("soft", taints=[{"key": "x", "effect": "PreferNoSchedule"}]),
    ]
    report = check([wl("a")], nodes)
    assert [n["name"] for n in report["nodes"]] == ["soft"]
    assert check([wl("a")], nodes[:2])["problems"][0].startswith("the cluster has no schedulable node")


def test_totals_fit_but_no_node_is_big_enough():
    report = check(
        [wl("kafka", replicas=1, cpu="1500m", memory="1Gi")], [node("n1", cpu="1"), node("n2", cpu="1")]
    )
    assert not report["fits"]
    assert "fits on no node" in report["problems"][0]


def test_daemonsets_take_a_pod_on_every_node_and_pods_are_limited():
    report = check(
        [wl("alloy", cpu="100m", per_node=True), wl("apps", replicas=5)],
        [node("n1", pods=3), node("n2", pods=3)],
    )
    assert report["requested"]["pods"] == 7 and report["requested"]["cpu"] == 700
    assert report["problems"] == ["needs 7 pods, the nodes allow 6 more"]


def test_a_fitting_stack_passes_with_its_rows():
    report = check([wl("a", replicas=2), wl("b", cpu="1", memory="2Gi")], [node("n1"), node("n2")])
    assert report["fits"] and report["problems"] == []
    assert [r["pods"] for r in report["workloads"]] == [2, 1]


def test_workload_without_a_name_is_refused():
    with pytest.raises(CapacityError, match="needs at least a name"):
        normalize_workload({"replicas": 2})


def test_a_given_workload_with_the_dapr_sidecar_adds_its_requests():
    w = normalize_workload(
        {"name": "todo/backend", "cpu": "100m", "memory": "192Mi", "dapr_sidecar": True},
        {"cpu": "50m", "memory": "64Mi"},
    )
    assert (w["cpu"], w["memory"]) == (150, 256 * 2**20)


def _c(name, requests=None, limits=None, **kw):
    resources = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    return dict(name=name, resources=resources, **kw)


def test_a_plain_init_container_after_sidecars_needs_them_beside_it():
    """Kubernetes' effective init request: a plain init container runs next to the sidecars
    started before it, so it asks for their sum plus its own."""
    spec = {
        "initContainers": [
            _c("side", {"cpu": "300m", "memory": "300Mi"}, restartPolicy="Always"),
            _c("migrate", {"cpu": "500m", "memory": "500Mi"}),
        ],
        "containers": [_c("app", {"cpu": "100m", "memory": "100Mi"})],
    }
    assert pod_requests(spec) == (800, 800 * 2**20)
    # A plain init container before the sidecar runs alone.
    spec["initContainers"].reverse()
    assert pod_requests(spec) == (500, 500 * 2**20)


def test_limits_without_requests_request_the_limits():
    spec = {
        "containers": [
            _c("a", limits={"cpu": "200m", "memory": "256Mi"}),
            _c("b", {"cpu": "50m"}, {"memory": "64Mi"}),
        ]
    }
    assert pod_requests(spec) == (250, 320 * 2**20)


@pytest.mark.parametrize("bad", ["1.2.3", "..", "1e", "12Xi", "."])
def test_a_malformed_quantity_is_a_capacity_error(bad):
    with pytest.raises(CapacityError, match="is not a Kubernetes quantity"):
        millicores(bad, "backend cpu request")


def test_a_malformed_replica_count_is_a_capacity_error():
    obj = statefulset("loki", "three", "100m", "128Mi")
    with pytest.raises(CapacityError, match=r"spec.replicas: 'three' is not a number"):
        workloads_from_manifests([obj])


def _operator_deployment(cpu="0", memory="0"):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "operator", "namespace": "monitoring"},
        "spec": {"template": {"spec": {"containers": [_c("operator", {"cpu": "100m"}, args=[
            "--kubelet-service=kube-system/kubelet",
            f"--config-reloader-cpu-request={cpu}", "--config-reloader-cpu-limit=0",
            f"--config-reloader-memory-request={memory}", "--config-reloader-memory-limit=0",
        ])]}}},
    }  # fmt: skip


def _operator_object(kind, **spec):
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": kind,
            "metadata": {"name": kind.lower(), "namespace": "monitoring"}, "spec": spec}  # fmt: skip


def test_prometheus_and_alertmanager_are_workloads_with_the_operators_reloader():
    term = {"labelSelector": {"matchLabels": {"app": "am"}}, "topologyKey": "kubernetes.io/hostname"}
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    manifests = [
        _operator_deployment("10m", "50Mi"),
        _operator_object(
            "Prometheus", replicas=2, shards=2, resources={"requests": {"cpu": "500m", "memory": "2Gi"}}
        ),
        _operator_object(
            "Alertmanager", resources={"requests": {"cpu": "50m", "memory": "128Mi"}}, affinity=anti
        ),
        _operator_object(
            "PrometheusAgent", mode="DaemonSet", resources={"limits": {"cpu": "100m", "memory": "1Gi"}}
        ),
    ]
    got = {w["name"]: w for w in workloads_from_manifests(manifests)}
    prom, am, agent = (
        got["monitoring/prometheus"],
        got["monitoring/alertmanager"],
        got["monitoring/prometheusagent"],
    )
    assert (prom["replicas"], prom["cpu"], prom["memory"]) == (4, 510, 2 * GI + 50 * 2**20)
    assert (am["replicas"], am["cpu"], am["memory"], am["distinct_nodes"]) == (1, 60, 178 * 2**20, True)
    assert (agent["per_node"], agent["cpu"], agent["memory"]) == (True, 110, GI + 50 * 2**20)


def test_prometheus_without_the_operator_counts_its_own_requests():
    """The chart's default (--config-reloader-*-request=0) and an operator installed elsewhere:
    the reloader requests nothing known here."""
    prom = _operator_object("Prometheus", resources={"requests": {"cpu": "500m", "memory": "2Gi"}})
    for manifests in ([prom], [_operator_deployment(), prom]):
        (w,) = [w for w in workloads_from_manifests(manifests) if w["name"] == "monitoring/prometheus"]
        assert (w["replicas"], w["cpu"], w["memory"]) == (1, 500, 2 * GI)


HINTS = {
    "logging": "logging_values_overrides (singleBinary.replicas, singleBinary.resources)",
    "todo/backend": "apps_services.backend (replicas, resources.requests)",
    "todo": "apps_services (replicas, resources.requests)",
}


def test_a_short_anti_affinity_names_the_settings_of_that_workload():
    report = check([wl("logging/loki", 3, distinct_nodes=True), wl("todo/backend")], [node("a"), node("b")])
    assert report["culprits"] == ["logging/loki"]
    assert advice(report, HINTS) == ["logging/loki: " + HINTS["logging"]]


def test_short_cpu_names_the_largest_requests_with_their_settings():
    report = check(
        [
            wl("todo/backend", 2, cpu="800m"),
            wl("todo/worker", 1, cpu="100m"),
            wl("logging/loki", 1, cpu="600m"),
        ],
        [node("a", cpu="1500m")],
    )
    assert not report["fits"]
    assert report["culprits"][:2] == ["todo/backend", "logging/loki"]
    assert advice(report, HINTS)[:2] == [
        "todo/backend: " + HINTS["todo/backend"],
        "logging/loki: " + HINTS["logging"],
    ]
    # A workload without a hint is left out; the namespace's hint applies when the name has none.
    assert advice(report, {"todo": HINTS["todo"]}) == [
        "todo/backend: " + HINTS["todo"],
        "todo/worker: " + HINTS["todo"],
    ]


def test_the_stacks_own_pod_in_a_shared_namespace_is_not_counted_twice():
    """metrics-server runs in kube-system with the stack's labels: on a second run its pod is the
    workload being checked, not another user of the node."""
    labels = {"app.kubernetes.io/part-of": "todo-platform", "app.kubernetes.io/managed-by": "ansible"}
    pod = {
        "metadata": {"name": "metrics-server-1", "namespace": "kube-system", "labels": labels},
        "spec": {"nodeName": "a", "containers": [_c("m", {"cpu": "100m", "memory": "200Mi"})]},
        "status": {"phase": "Running"},
    }
    other = dict(pod, metadata={"name": "coredns", "namespace": "kube-system", "labels": {}})
    report = check([wl("kube-system/metrics-server")], [node("a")], [pod, other], ["todo"], labels)
    assert report["other_requests"]["cpu"] == 100 and report["other_requests"]["pods"] == 1
    assert check([wl("x")], [node("a")], [pod], ["todo"])["other_requests"]["pods"] == 1
