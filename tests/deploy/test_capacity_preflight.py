"""The capacity preflight (playbooks/capacity.yml, role ``capacity``) on kwok clusters shaped like
the cluster each inventory's guide creates (tests/deploy/cloud_shapes.py), both ways:

* the guide's cluster holds the inventory's stack: the preflight passes (every enabled chart is
  rendered from the upstream archives of the test data with the values its role passes, plus our
  own workloads);
* the real kube-scheduler places pods with the same requests and anti-affinity on that cluster
  (pause pods that kwok marks Ready once scheduled), so the preflight's verdict is checked against
  the scheduler's;
* a cluster too small for it stops the deployment with a message that names what is missing: the
  two-node OKE/AKS clusters the guides created before (Loki's three replicas with required
  anti-affinity). The other shortages (CPU, memory, pods, node-by-node placement) and their
  messages are unit-tested with the module's arithmetic
  (collections/.../tests/unit/plugins/module_utils/test_capacity.py).

The same runs print each inventory's requests against its nodes' allocatable; docs/capacity.md is
that table, and ``test_capacity_doc_is_current`` fails when it is stale (``TODO_WRITE_CAPACITY_DOC=1``
rewrites it).

Only the preflight runs here (rendering and arithmetic against the API server's nodes, ~10 s per
inventory), followed by the pause-pod probe above; no Helm release is installed. Installing the five
inventories' releases on their shapes would cost minutes each on the CI machine's two cores, and no
other test installs them either: the molecule kwok scenario keeps every chart off
(``*_install_chart: false`` in molecule/kwok/inventory/host_vars/todo-kwok.yml). What the charts
create is checked by rendering them (tests/deploy/test_chart_render.py: helm template with each
role's values, server-side dry run against the test bed's API server).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import time

import pytest
import yaml
from cloud_shapes import shape
from deploy_support import ENVIRONMENTS, ROOT, crds_dir, run, tool_env

pytestmark = [pytest.mark.testbed, pytest.mark.timeout(1800)]

DOC = ROOT / "docs" / "capacity.md"
CHART_ARCHIVES = {
    "kafka_strimzi_chart_ref": "strimzi-kafka-operator-{{ kafka_strimzi_chart_version }}.tgz",
    "dapr_chart_ref": "dapr-{{ dapr_chart_version }}.tgz",
    "monitoring_chart_ref": "kube-prometheus-stack-{{ monitoring_chart_version }}.tgz",
    "logging_loki_chart_ref": "loki-{{ logging_loki_chart_version }}.tgz",
    "logging_alloy_chart_ref": "alloy-{{ logging_alloy_chart_version }}.tgz",
}
TASK = "Check that the cluster can hold the stack"
_reports: dict[str, dict] = {}


@pytest.fixture(scope="module")
def shaped(testbed_run):
    from testbed.kube_shapes import ShapedKube

    comp = ShapedKube(testbed_run)
    comp.start()
    try:
        yield comp
    finally:
        comp.destroy()


def run_capacity(kube, env_name: str, tmp_path, extra: dict | None = None) -> tuple[dict, str]:
    """Run playbooks/capacity.yml for an inventory; returns the JSON callback's result and the output."""
    from testbed import gobuild

    charts = crds_dir().parent / "charts"
    overrides = {key: f"{charts}/{archive}" for key, archive in CHART_ARCHIVES.items()}
    overrides.update(
        # The roles' default repository URLs stay in place: they do not apply to a local archive
        # (todo.platform.chart_repo_url).
        capacity_helm_binary=str(gobuild.TOOLS["helm"].binary()),
        # No image is built here: any immutable reference satisfies the apps preflight.
        apps_image="registry.example.test/todo-services:src-0123456789abcdef",
        cluster_kubeconfig=kube.kubeconfig, cluster_context=kube.context,
    )  # fmt: skip
    overrides.update(extra or {})
    overrides_file = tmp_path / f"capacity-{env_name}.json"
    overrides_file.write_text(json.dumps(overrides))
    env = dict(
        tool_env(kube), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_CALLBACK_RESULT_FORMAT="json"
    )
    result = run(["ansible-playbook", "playbooks/capacity.yml", "-i", f"inventories/{env_name}",
                  "-e", f"@{overrides_file}"], env, timeout=600)  # fmt: skip
    try:
        out = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(
            f"{env_name}: no JSON from ansible-playbook\n{result.stdout[-4000:]}\n{result.stderr[-3000:]}"
        ) from None
    return out, result.stdout + result.stderr


def preflight(kube, env_name: str, tmp_path, extra: dict | None = None) -> tuple[dict, str]:
    """Run playbooks/capacity.yml for an inventory; returns the capacity task's result and the output."""
    out, stdout = run_capacity(kube, env_name, tmp_path, extra)
    durations = sorted(
        ((_seconds(t["task"]["duration"]), t["task"]["name"]) for p in out["plays"] for t in p["tasks"]),
        reverse=True,
    )
    print(f"{env_name}: slowest tasks", [f"{name} {secs:.1f}s" for secs, name in durations[:4]])
    failures = []
    for play in out["plays"]:
        for task in play["tasks"]:
            host = next(iter(task["hosts"].values()), {})
            if task["task"]["name"].endswith(TASK):
                return host, stdout
            if host.get("failed"):
                failures.append(
                    f"{task['task']['name']}: {[r.get('msg') for r in host.get('results', [host])]}"
                )
    raise AssertionError(f"{env_name}: the capacity check did not run: {failures}")


PROBE_NS = "capacity-probe"


def _probe_objects(report: dict) -> list[dict]:
    """One Deployment (DaemonSet for per-node workloads) per workload of the report: pods with the
    same requests and the same required anti-affinity, which kwok marks Ready once scheduled."""
    objects: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PROBE_NS}}]
    for w in report["workloads"]:
        name = re.sub(r"[^a-z0-9-]+", "-", w["name"].lower()).strip("-")[:50]
        pod: dict = {
            "containers": [{
                "name": "c", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": f"{w['cpu']}m", "memory": str(w["memory"])}},
            }],
        }  # fmt: skip
        if w["distinct_nodes"]:
            pod["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"probe": name}}, "topologyKey": "kubernetes.io/hostname"}
            ]}}  # fmt: skip
        spec = {"selector": {"matchLabels": {"probe": name}},
                "template": {"metadata": {"labels": {"probe": name}}, "spec": pod}}  # fmt: skip
        if w["per_node"]:
            kind = "DaemonSet"
        else:
            kind, spec["replicas"] = "Deployment", w["pods"]
        meta = {"name": name, "namespace": PROBE_NS}
        objects.append({"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec})
    return objects


def schedule_like(kube, report: dict, timeout: float = 180) -> tuple[int, list[str]]:
    """Create the report's pods on the cluster and let the real kube-scheduler place them.
    Returns (expected pod count, names of the pods still unscheduled when every pod exists and the
    rest are Ready, with the scheduler's reason)."""
    kube.kubectl("delete", "namespace", PROBE_NS, "--ignore-not-found", "--wait=true", timeout=180)
    kube.kubectl("create", "-f", "-", input="\n".join(json.dumps(o) for o in _probe_objects(report)))
    expected = sum(w["pods"] for w in report["workloads"])
    deadline = time.monotonic() + timeout
    while True:
        pods = json.loads(kube.kubectl("get", "pods", "-n", PROBE_NS, "-o", "json").stdout)["items"]
        ready, pending = 0, []
        for pod in pods:
            conds = {c["type"]: c for c in pod.get("status", {}).get("conditions", [])}
            if conds.get("Ready", {}).get("status") == "True":
                ready += 1
            elif conds.get("PodScheduled", {}).get("status") == "False":
                pending.append(f"{pod['metadata']['name']}: {conds['PodScheduled'].get('message', '')}")
        settled = len(pods) == expected and ready + len(pending) == expected
        # Unschedulable pods are given half the time in case the scheduler is still retrying.
        if settled and (not pending or time.monotonic() > deadline - timeout / 2):
            return expected, pending
        if time.monotonic() > deadline:
            return expected, pending or [f"only {ready} of {expected} pods Ready after {timeout:.0f}s"]
        time.sleep(2)


def _seconds(duration: dict) -> float:
    start, end = (
        datetime.datetime.fromisoformat(duration[k].replace("Z", "+00:00")) for k in ("start", "end")
    )
    return (end - start).total_seconds()


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_the_guides_cluster_holds_the_stack(shaped, env_name, tmp_path):
    node_shape = shape(env_name)
    shaped.reshape(node_shape)
    report, _ = preflight(shaped, env_name, tmp_path)
    print(env_name, report.get("summary"), report.get("msg", ""))
    assert not report.get("failed"), f"{env_name}: {report.get('msg')}"
    assert report["fits"], report["problems"]
    assert report["node_count"] == node_shape.count
    names = {w["name"] for w in report["workloads"]}
    assert "logging/loki" in names and "todo/backend" in names, sorted(names)
    # The operator's objects become pods too (Prometheus and Alertmanager StatefulSets), and so does
    # the metrics-server the monitoring role installs where the platform has none.
    assert any(n.startswith("monitoring/") and n.endswith("-prometheus") for n in names), sorted(names)
    assert any(n.startswith("monitoring/") and n.endswith("-alertmanager") for n in names), sorted(names)
    monitoring = yaml.safe_load(
        (ROOT / "inventories" / env_name / "group_vars" / "todo_platform" / "monitoring.yml").read_text()
    )
    if monitoring.get("monitoring_metrics_server_install"):
        assert "kube-system/metrics-server" in names, sorted(names)
    # The real scheduler agrees: pods of the same requests and anti-affinity all land and get Ready.
    expected, pending = schedule_like(shaped, report)
    assert pending == [], f"{env_name}: the preflight passed but the scheduler left pods Pending: {pending}"
    print(f"{env_name}: all {expected} pods scheduled and Ready")
    _reports[env_name] = {"shape": dataclasses.asdict(node_shape), "report": report}


@pytest.mark.parametrize("env_name", ["oke", "aks"])
def test_two_nodes_cannot_hold_three_anti_affine_loki_replicas(shaped, env_name, tmp_path):
    """The OKE and AKS clusters the guides created before had two nodes."""
    shaped.reshape(dataclasses.replace(shape(env_name), count=2))
    report, _ = preflight(shaped, env_name, tmp_path)
    assert report.get("failed"), report
    assert "needs 3 nodes for logging/loki's required anti-affinity" in report["msg"]
    assert "the cluster has 2 schedulable nodes" in report["msg"]
    # ... and what the user changes: the logging role's Loki settings, or the check's own.
    msg = report["msg"]
    assert "logging/loki: logging_values_overrides (Loki: singleBinary.replicas" in msg, msg
    assert "capacity_check: false skips the check" in msg, msg
    # What would happen without the preflight: the scheduler leaves the third Loki replica Pending.
    _, pending = schedule_like(shaped, report, timeout=30)
    assert [p.split(":")[0].rsplit("-", 2)[0] for p in pending] == ["logging-loki"], pending
    assert "anti-affinity" in pending[0], pending


PLANTED = "planted-secret-3f9c1e7a"


def test_a_failing_render_names_the_chart_and_hides_the_values(shaped, tmp_path):
    """The values sent to helm can hold credentials: a failed render reports the release and
    helm's error, never the values."""
    shaped.reshape(shape("kind"))
    helm = tmp_path / "failing-helm"
    helm.write_text("#!/bin/sh\ncat >/dev/null\necho 'Error: chart rendering refused (test)' >&2\nexit 1\n")
    helm.chmod(0o755)
    values = {"dapr_chart_values": {"global": {"extraSecret": PLANTED}}, "capacity_helm_binary": str(helm)}
    out, output = run_capacity(shaped, "kind", tmp_path, values)
    failed = [
        (t["task"]["name"], host.get("msg"))
        for p in out["plays"] for t in p["tasks"] for host in t["hosts"].values() if host.get("failed")
    ]  # fmt: skip
    assert failed and failed[0][0].endswith("Check that every chart rendered"), failed
    assert "helm template of dapr" in output and "chart rendering refused (test)" in output, failed
    assert PLANTED not in output


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f}"


def render_doc(reports: dict[str, dict]) -> str:
    lines = [
        "# Capacity: what each inventory requests against its cluster",
        "",
        "Generated by `tests/deploy/test_capacity_preflight.py` (`TODO_WRITE_CAPACITY_DOC=1`",
        "rewrites it) from the capacity preflight (role `capacity`, module",
        "`todo.platform.cluster_capacity`) run against a kwok cluster shaped like the one each guide in",
        "`docs/guides/` creates. Requests are the sum of every pod the stack runs: the rendered charts",
        "(with the values the roles pass) and our own workloads (services with their Dapr sidecars,",
        "PostgreSQL, the Strimzi brokers). Allocatable is the nodes' capacity minus the kubelet's",
        "reservations (see `tests/deploy/cloud_shapes.py`); the cloud's own system pods (kube-system)",
        "come on top and are counted by the preflight on a real cluster.",
        "",
        "| inventory | nodes | CPU requested / allocatable | memory (GiB) requested / allocatable "
        "| pods / allowed | CPU headroom |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for env in ENVIRONMENTS:
        if env not in reports:
            continue
        shape_, rep = reports[env]["shape"], reports[env]["report"]
        req, alloc = rep["requested"], rep["allocatable"]
        lines.append(
            f"| {env} | {shape_['notes']} | {req['cpu'] / 1000:.2f} / {alloc['cpu'] / 1000:.2f} | "
            f"{_gib(req['memory'])} / {_gib(alloc['memory'])} | {req['pods']} / {alloc['pods']} | "
            f"{(alloc['cpu'] - req['cpu']) * 100 // max(alloc['cpu'], 1)}% |"
        )
    lines += [
        "",
        "The preflight stops `site.yml` before anything is installed when a cluster cannot hold the",
        "stack, naming what is missing (nodes for a workload's required anti-affinity, CPU, memory,",
        "pods) — for example the two-node OKE and AKS clusters cannot hold Loki's three replicas, whose",
        "chart requires one node each. `capacity_check: false` skips it; `capacity_extra_workloads`",
        "adds what else will share the cluster.",
        "",
    ]
    return "\n".join(lines)


def test_capacity_doc_is_current():
    """Runs after the inventories' preflights above (same module, file order)."""
    if set(_reports) != set(ENVIRONMENTS):
        pytest.fail(f"the preflights of {sorted(set(ENVIRONMENTS) - set(_reports))} did not pass; no table")
    text = render_doc(_reports)
    if os.environ.get("TODO_WRITE_CAPACITY_DOC") == "1":
        DOC.write_text(text)
    assert DOC.exists() and DOC.read_text() == text, (
        "docs/capacity.md is stale; rerun with TODO_WRITE_CAPACITY_DOC=1 and commit it\n" + text
    )
