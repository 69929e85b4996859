"""The capacity preflight (playbooks/capacity.yml, role ``capacity``) on kwok clusters shaped like
the cluster each inventory's guide creates (tests/deploy/cloud_shapes.py), both ways:

* the guide's cluster holds the inventory's stack: the preflight passes (every enabled chart is
  rendered from the upstream archives of the test data with the values its role passes, plus our
  own workloads);
* the stack is then installed on that cluster and the real kube-scheduler places it: every release
  the inventory's roles install (Strimzi, Dapr, kube-prometheus-stack, Loki, Alloy) is installed
  with helm from the test data's archive with exactly the values its role passes (read from the
  roles as tests/deploy/test_chart_render.py reads them) and the role's ``wait``/``atomic``; the
  pods no chart object makes (our services with their Dapr sidecars, PostgreSQL, what the Strimzi
  and Prometheus operators would create, metrics-server) are pause pods with the requests and
  anti-affinity the preflight counted for them, because those operators, the Dapr injector and
  metrics-server do not run on kwok. Every pod must be scheduled and Ready (kwok marks a scheduled
  pod Ready; a Job's pod Succeeded);
* a cluster too small for it stops the deployment with a message that names what is missing: the
  two-node OKE/AKS clusters the guides created before (Loki's three replicas with required
  anti-affinity). The real Loki release on such a cluster leaves its third replica Pending. The other
  shortages (CPU, memory, pods, node-by-node placement) and their messages are unit-tested with the
  module's arithmetic (collections/.../tests/unit/plugins/module_utils/test_capacity.py).

The same runs print each inventory's requests against its nodes' allocatable; docs/capacity.md is
that table, and ``test_capacity_doc_is_current`` fails when it is stale (``TODO_WRITE_CAPACITY_DOC=1``
rewrites it).

The kwok settings of the molecule kwok scenario apply here too, from the same file
(molecule/kwok/inventory/host_vars/todo-kwok.yml, where each has its reason): the Dapr injector's
webhook scoped to no pod, and kube-prometheus-stack's admission webhooks (and the operator's TLS,
which needs their certificate) off.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from cloud_shapes import shape
from deploy_support import ENVIRONMENTS, ROOT, crds_dir, run, tool_env
from test_chart_render import CHARTS, CRD_SETS, ROLES, _helm_tasks, chart_archive, render_role_values

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
        comp.install_crds(CRD_SETS)  # the roles' crds phase: before any release
        yield comp
    finally:
        comp.destroy()


@pytest.fixture(scope="module")
def role_releases(tmp_path_factory) -> dict[str, list[dict]]:
    """Per inventory, the releases its roles install, with the values they pass."""
    started = time.monotonic()
    values = render_role_values(tmp_path_factory.mktemp("chart-values"), ENVIRONMENTS)
    seconds = time.monotonic() - started
    print(f"\nroles' helm values rendered for {len(ENVIRONMENTS)} inventories in {seconds:.0f} s")
    return values


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


KWOK_SETTINGS = ROOT / "molecule" / "kwok" / "inventory" / "host_vars" / "todo-kwok.yml"
#: Release -> the role setting merged over its values (recursively, as the role does) on kwok.
KWOK_VALUES = {"dapr": "dapr_chart_values", "kube-prometheus-stack": "monitoring_values_overrides"}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def _helm_flags() -> dict[tuple[str, str], dict]:
    """(role, task name) -> the role's wait/atomic/skip_crds/timeout setting of that helm task."""
    return {(role, t["task"]): t["args"] for role in ROLES for t in _helm_tasks(role)}


def helm(kube, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    from testbed import gobuild

    argv = [
        str(gobuild.TOOLS["helm"].binary()),
        "--kubeconfig",
        kube.kubeconfig,
        "--kube-context",
        kube.context,
    ]
    work = Path(kube.workdir) / "helm"
    env = dict(os.environ, HELM_CACHE_HOME=str(work / "cache"), HELM_CONFIG_HOME=str(work / "config"),
               HELM_DATA_HOME=str(work / "data"))  # fmt: skip
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def install_release(kube, rel: dict, tmp_path, timeout_s: int | None = None, atomic: bool | None = None):
    """helm upgrade --install of one release as its role installs it (archive of the pinned version,
    the role's values plus the kwok settings, wait, atomic, skip_crds); returns helm's result."""
    args = _helm_flags()[(rel["role"], rel["task"])]
    kwok = yaml.safe_load(KWOK_SETTINGS.read_text())
    values = _merge(rel["values"], kwok.get(KWOK_VALUES.get(rel["name"], ""), {}))
    values_file = tmp_path / f"{rel['name']}-values.json"
    values_file.write_text(json.dumps(values))
    argv = ["upgrade", "--install", rel["name"], str(chart_archive(rel["name"], rel["chart_version"])),
            "--namespace", rel["namespace"], "--create-namespace", "--values", str(values_file),
            "--wait", "--timeout", f"{timeout_s or 600}s"]  # fmt: skip
    if (args.get("atomic") is True) if atomic is None else atomic:
        argv.append("--atomic")
    if args.get("skip_crds") is True:
        argv.append("--skip-crds")
    return helm(kube, *argv, timeout=(timeout_s or 600) + 120)


def reset_stack(kube) -> None:
    """Uninstall every release and delete the namespaces of a previous inventory's stack."""
    listed = helm(kube, "list", "--all-namespaces", "--all", "-o", "json", timeout=120)
    assert listed.returncode == 0, listed.stderr
    for rel in json.loads(listed.stdout or "[]"):
        helm(kube, "uninstall", rel["name"], "--namespace", rel["namespace"], "--wait", timeout=300)
    namespaces = [PROBE_NS, "todo", "kafka", "dapr-system", "monitoring", "logging"]
    kube.kubectl("delete", "namespace", "--ignore-not-found", "--wait=true", *namespaces, timeout=300)


def reshape_empty(kube, node_shape) -> None:
    """The cluster in a new shape with no stack on it. The previous inventory's stack goes first:
    reshape deletes its pods and nodes, but its controllers make the pods again, and once pod GC
    has removed the ones bound to the old nodes (about a minute) they land on the new nodes, where
    the preflight counts them as other pods: 11 pods and 1.32 CPU after aks, which made gke's
    check fail when the machine was slow."""
    reset_stack(kube)
    kube.reshape(node_shape)


def _pod_state(pods: list[dict]) -> tuple[int, list[str]]:
    """(Ready pods, 'name: reason' of pods the scheduler could not place)."""
    ready, pending = 0, []
    for pod in pods:
        conds = {c["type"]: c for c in pod.get("status", {}).get("conditions", [])}
        if conds.get("Ready", {}).get("status") == "True":
            ready += 1
        elif conds.get("PodScheduled", {}).get("status") == "False":
            pending.append(f"{pod['metadata']['namespace']}/{pod['metadata']['name']}: "
                           f"{conds['PodScheduled'].get('message', '')}")  # fmt: skip
    return ready, pending


def install_stack(kube, env_name: str, releases: list[dict], report: dict, tmp_path,
                  timeout: float = 300) -> dict:  # fmt: skip
    """Install the inventory's releases, then stand-ins for the workloads no chart object makes, and
    wait until every pod is Ready (or the scheduler has given up on some). Returns what was placed."""
    reset_stack(kube)
    started = time.monotonic()
    # In the order site.yml installs them.
    installed = sorted((r for r in releases if r["installed"]), key=lambda r: ROLES.index(r["role"]))
    for rel in installed:
        result = install_release(kube, rel, tmp_path)
        assert result.returncode == 0, (
            f"{env_name}: helm install of {rel['name']} failed:\n{result.stderr[-3000:]}"
        )
    chart_seconds = time.monotonic() - started
    objects = json.loads(
        kube.kubectl("get", "deployments,statefulsets,daemonsets", "-A", "-o", "json").stdout
    )
    made = {f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in objects["items"]}
    from_charts = [w for w in report["workloads"] if w["name"] in made]
    stand_ins = [w for w in report["workloads"] if w["name"] not in made]
    kube.kubectl(
        "create", "-f", "-", input="\n".join(json.dumps(o) for o in _probe_objects({"workloads": stand_ins}))
    )
    namespaces = {r["namespace"] for r in installed} | {PROBE_NS}
    expected = sum(w["pods"] for w in report["workloads"])
    deadline = time.monotonic() + timeout
    while True:
        pods = [
            p for p in json.loads(kube.kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]
            if p["metadata"]["namespace"] in namespaces
            and not any(o["kind"] == "Job" for o in p["metadata"].get("ownerReferences", []))
        ]  # fmt: skip
        ready, pending = _pod_state(pods)
        settled = len(pods) == expected and ready + len(pending) == expected
        if (settled and not pending) or time.monotonic() > deadline:
            break
        time.sleep(3)
    return {
        "releases": [f"{r['name']} ({CHARTS[r['name']]} {r['chart_version']})" for r in installed],
        "not_installed": [r["name"] for r in releases if not r["installed"]],
        "chart_pods": sum(w["pods"] for w in from_charts),
        "stand_in_pods": sum(w["pods"] for w in stand_ins),
        "stand_ins": sorted(w["name"] for w in stand_ins),
        "expected": expected,
        "pods": len(pods),
        "ready": ready,
        "pending": pending,
        "chart_seconds": round(chart_seconds),
        "seconds": round(time.monotonic() - started),
    }


def _seconds(duration: dict) -> float:
    start, end = (
        datetime.datetime.fromisoformat(duration[k].replace("Z", "+00:00")) for k in ("start", "end")
    )
    return (end - start).total_seconds()


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_the_guides_cluster_holds_the_stack(shaped, role_releases, env_name, tmp_path):
    node_shape = shape(env_name)
    reshape_empty(shaped, node_shape)
    report, _ = preflight(shaped, env_name, tmp_path)
    # Nothing else runs on the shaped nodes: a pod counted here is a previous stack's, made again.
    assert (report.get("other_requests") or {}).get("pods") == 0, (
        report.get("other_requests"),
        report.get("msg"),
    )
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
    # The real scheduler agrees: the releases and our workloads all land and get Ready.
    placed = install_stack(shaped, env_name, role_releases[env_name], report, tmp_path)
    print(f"{env_name}: {placed}")
    assert placed["pending"] == [], (
        f"{env_name}: the preflight passed but the scheduler left pods Pending: {placed['pending']}"
    )
    assert placed["ready"] == placed["pods"] == placed["expected"], placed
    print(
        f"{env_name}: all {placed['expected']} pods scheduled and Ready ({placed['chart_pods']} from the "
        f"charts' objects, {placed['stand_in_pods']} stand-ins) in {placed['seconds']} s"
    )
    _reports[env_name] = {"shape": dataclasses.asdict(node_shape), "report": report, "placed": placed}


@pytest.mark.parametrize("env_name", ["oke", "aks"])
def test_two_nodes_cannot_hold_three_anti_affine_loki_replicas(shaped, role_releases, env_name, tmp_path):
    """The OKE and AKS clusters the guides created before had two nodes."""
    reshape_empty(shaped, dataclasses.replace(shape(env_name), count=2))
    report, _ = preflight(shaped, env_name, tmp_path)
    assert report.get("failed"), report
    assert "needs 3 nodes for logging/loki's required anti-affinity" in report["msg"]
    assert "the cluster has 2 schedulable nodes" in report["msg"]
    # ... and what the user changes: the logging role's Loki settings, or the check's own.
    msg = report["msg"]
    assert "logging/loki: logging_values_overrides (Loki: singleBinary.replicas" in msg, msg
    assert "capacity_check: false skips the check" in msg, msg
    # What happens without the preflight: the real Loki release (the role's values) waits in vain
    # for its third replica, which the scheduler leaves Pending. Installed without --atomic (and with
    # a short timeout), so the Pending replica stays to be looked at instead of being rolled back.
    (loki,) = [r for r in role_releases[env_name] if r["name"] == "loki"]
    result = install_release(shaped, loki, tmp_path, timeout_s=60, atomic=False)
    assert result.returncode != 0, f"{env_name}: Loki installed on two nodes:\n{result.stdout[-2000:]}"
    print(f"{env_name}, 2 nodes: helm install of loki: {result.stderr.strip()[-300:]}")
    pods = json.loads(shaped.kubectl("get", "pods", "-n", "logging", "-o", "json").stdout)["items"]
    replicas = [p for p in pods if re.fullmatch(r"loki-\d+", p["metadata"]["name"])]  # the StatefulSet's
    ready, pending = _pod_state(replicas)
    # One of the three replicas (the chart starts them in parallel, so any one of them).
    assert len(replicas) == 3 and len(pending) == 1, pending
    assert "anti-affinity" in pending[0], pending
    assert ready == 2, f"{env_name}: {ready} Loki replicas Ready on two nodes"
    print(f"{env_name}, 2 nodes: {pending[0]}")


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
        "The same test then installs the stack on that kwok cluster and lets the real scheduler place",
        "it: every release the inventory's roles install, with helm, from the upstream chart archive",
        "and with the values the role passes, and stand-in pods (the requests and anti-affinity the",
        "preflight counted) for what no chart object makes on kwok: our services with their Dapr",
        "sidecars, PostgreSQL, the pods the Strimzi and Prometheus operators would create, and",
        "metrics-server. The last column counts the pods that were scheduled and became Ready.",
        "",
        "| inventory | nodes | CPU requested / allocatable | memory (GiB) requested / allocatable "
        "| pods / allowed | CPU headroom | installed on kwok: pods Ready (from charts + stand-ins) |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for env in ENVIRONMENTS:
        if env not in reports:
            continue
        shape_, rep, placed = reports[env]["shape"], reports[env]["report"], reports[env]["placed"]
        req, alloc = rep["requested"], rep["allocatable"]
        lines.append(
            f"| {env} | {shape_['notes']} | {req['cpu'] / 1000:.2f} / {alloc['cpu'] / 1000:.2f} | "
            f"{_gib(req['memory'])} / {_gib(alloc['memory'])} | {req['pods']} / {alloc['pods']} | "
            f"{(alloc['cpu'] - req['cpu']) * 100 // max(alloc['cpu'], 1)}% | "
            f"{placed['ready']} of {placed['expected']} "
            f"({placed['chart_pods']} + {placed['stand_in_pods']}) |"
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
    print("\n" + text)
    if os.environ.get("TODO_WRITE_CAPACITY_DOC") == "1":
        DOC.write_text(text)
    assert DOC.exists() and DOC.read_text() == text, (
        "docs/capacity.md is stale; rerun with TODO_WRITE_CAPACITY_DOC=1 and commit it\n" + text
    )
