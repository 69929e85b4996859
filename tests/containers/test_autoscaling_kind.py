"""Autoscaling on the real kind cluster (issue 16, item 3).

kind comes without metrics-server; the monitoring role installs it (monitoring_metrics_server_install,
inventories/kind), with --kubelet-insecure-tls because a kind node's kubelet serves a self-signed
certificate no cluster CA signed (monitoring_metrics_server_kubelet_insecure_tls). Here:

* the resource metrics API answers for every container of ours, daprd included, and the backend HPA
  reads a CPU utilization (not <unknown>);
* under API load through port-forward the backend HPA scales the Deployment out, and back in to its
  minimum once the load stops. The role's HPA waits 300 s of low readings before it scales down
  (behavior.scaleDown.stabilizationWindowSeconds, against flapping in production); the test sets that
  window to 15 s for the scale-in and puts the role's value back after, so CI does not wait 5 minutes.

Replica counts are polled, never timed. By hand, after the converge::

    .venv/bin/pytest -q -s tests/containers/test_molecule_kind.py::test_molecule_kind_local_converges \\
        tests/containers/test_autoscaling_kind.py
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from containers import kind_load
from containers.test_monitoring_kind import resource_table
from e2e.e2e_support import eventually

pytestmark = [pytest.mark.testbed, pytest.mark.slow, pytest.mark.timeout(7200)]

APPS = "todo"
HPA = "backend"
#: the scale-down window for the test's scale-in (the role's stays 300 s)
TEST_STABILIZATION_SECONDS = 15


def poll(probe, what: str, within: float) -> object:
    async def probe_async():
        return probe()

    return asyncio.run(eventually(probe_async, what, within))


def test_metrics_api_serves_every_container_and_the_hpa_reads_cpu(kind_platform):
    started = time.monotonic()
    kubectl = kind_platform.kubectl
    # the room the scale-out has on the one node (the scenario's requests, molecule/kind-local)
    described = kubectl("describe", "nodes")
    print(described[described.index("Allocated resources:") :].split("Events:")[0])
    pods = kubectl.json("-n", APPS, "get", "pods", "-l", "app.kubernetes.io/part-of=todo-platform")["items"]
    # running pods only: the migration Job's completed pod has no metrics
    running = [p for p in pods if p["status"]["phase"] == "Running"]
    expected = {(p["metadata"]["name"], c["name"]) for p in running for c in p["spec"]["containers"]}
    assert any(c == "daprd" for _, c in expected), expected

    def served():
        # the aggregated API answers 503 while metrics-server has not scraped every kubelet yet
        reply = kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{APPS}/pods", check=False)
        if not reply:
            return None
        raw = json.loads(reply)
        found = {(p["metadata"]["name"], c["name"]) for p in raw["items"] for c in p["containers"]}
        return found >= expected

    poll(served, "metrics.k8s.io serving every container of ours", 300)

    def hpa_reads_cpu():
        status = kubectl.json("-n", APPS, "get", "hpa", HPA)["status"]
        metrics = status.get("currentMetrics") or []
        return [
            m
            for m in metrics
            if m.get("resource", {}).get("current", {}).get("averageUtilization") is not None
        ]

    reading = poll(hpa_reads_cpu, f"HPA {HPA} reading a CPU utilization", 300)
    print(
        f"HPA {HPA} reads {reading[0]['resource']['current']}; metrics API check "
        f"{time.monotonic() - started:.0f}s"
    )


def _replicas(kubectl) -> tuple[int, int]:
    hpa = kubectl.json("-n", APPS, "get", "hpa", HPA)
    deployment = kubectl.json("-n", APPS, "get", "deployment", HPA)
    return hpa["status"].get("desiredReplicas", 0), deployment["status"].get("readyReplicas", 0)


def test_backend_hpa_scales_out_under_load_and_back_in(kind_platform):
    started = time.monotonic()
    kubectl = kind_platform.kubectl
    hpa = kubectl.json("-n", APPS, "get", "hpa", HPA)
    minimum, maximum = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
    assert maximum > minimum, hpa["spec"]
    original_window = hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
    poll(lambda: _replicas(kubectl) == (minimum, minimum), f"{HPA} at its minimum before the load", 600)

    def set_window(seconds: int) -> None:
        patch = {"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": seconds}}}}
        kubectl("-n", APPS, "patch", "hpa", HPA, "--type=merge", "-p", json.dumps(patch))

    load_started = time.time()
    try:
        with kind_load.forwarded(kubectl, ("backend",)) as urls:
            with kind_load.ApiLoad(urls["E2E_BACKEND_URL"]) as load:
                scaled = poll(
                    lambda: (r := _replicas(kubectl))[0] > minimum and r[1] > minimum and r,
                    f"HPA {HPA} scaling out above {minimum} under load",
                    600,
                )
                out_at = time.monotonic() - started
                utilization = kubectl.json("-n", APPS, "get", "hpa", HPA)["status"]["currentMetrics"]
            print(
                f"scaled out to {scaled} (desired, ready) after {out_at:.0f}s of load: {utilization}; "
                f"{load.requests} requests, {load.failures} failed"
            )
            assert load.requests > 0
        load_ended = time.time()
    finally:
        # back to the minimum whatever happened above (a later module must not find extra or Pending
        # pods), then the role's window
        try:
            set_window(TEST_STABILIZATION_SECONDS)
            poll(
                lambda: (
                    _replicas(kubectl) == (minimum, minimum) and len(kind_load.pods(kubectl, HPA)) == minimum
                ),
                f"HPA {HPA} back to {minimum} replica(s), no other pod left",
                600,
            )
        finally:
            set_window(original_window)
    print(f"scaled back in to {minimum} after {time.monotonic() - started - out_at:.0f}s without load")
    # the containers of ours under that load (issue 16 item 5, docs/performance.md)
    print(resource_table(kubectl, f"{int(time.time() - load_started)}s", load_ended + 60))
    print(f"autoscaling check: {time.monotonic() - started:.0f}s")
