"""The apps role's NetworkPolicies (roles/apps/templates/networkpolicies.yml.j2), enforced on the kind
cluster and proven both ways (issue 16, item 2).

Enforcement: kube-network-policies, the engine kindnetd embeds, runs as a DaemonSet of the node image's
default CNI manifest (tests/testbed/kind_node.py). It drops what no policy allows, so a refused
connection *times out* ("dropped"); a port with nothing listening answers at once ("refused"). Each
probe pod (the services image, ``python3`` socket connects, all targets at once) therefore tells the
policy apart from a service that is down, and every target dropped for one source is shown connected
from another source (or, for the Dapr API bound to the pod's loopback, from inside the pod itself).

Probes, deleted afterwards: in the application namespace one pod labelled as a service
(``app.kubernetes.io/component: service``) and one outside that set; in the monitoring namespace one
labelled as Prometheus' pods are and one that is not; one in a namespace of its own. Targets: a
backend pod's app port (8000), its daprd's metrics (9090), internal gRPC (50002) and API (3500 HTTP,
50001 gRPC) ports, the external database and Kafka (the test bed's, through the policies' CIDR egress
rules), the Dapr control plane (sentry), and DNS.

What the engine (kube-network-policies v0.8.0) does not do: a peer given by namespace or pod selector
also matches every address that is no pod (``evaluateSelectors`` returns true for a nil pod), so the
services' rule to the Dapr namespace and the DNS rule admit any address outside the cluster (on their
ports). The services' database and Kafka CIDR rules are therefore proven with the migration probe,
whose only egress besides DNS is the database's CIDR rule.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import pytest
from e2e.e2e_support import eventually

pytestmark = [pytest.mark.testbed, pytest.mark.slow, pytest.mark.timeout(7200)]

NAMESPACE = "todo"
MONITORING = "monitoring"
OUTSIDE = "netpol-probe-outside"
CONNECT_SECONDS = 3
#: labels kube-prometheus-stack's Prometheus pods carry (prometheus-operator's selector labels)
PROMETHEUS_LABELS = {"app.kubernetes.io/name": "prometheus"}

#: runs in a probe: connect to every (name, host, port) at once; print name -> outcome as JSON
PROBE = f"""
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
def connect(target):
    name, host, port = target
    if port == "dns":
        try:
            socket.getaddrinfo(host, 80, proto=socket.IPPROTO_TCP)
            return name, "resolved"
        except OSError as error:
            return name, "unresolved " + str(error)
    try:
        socket.create_connection((host, port), timeout={CONNECT_SECONDS}).close()
        return name, "connected"
    except ConnectionRefusedError:
        return name, "refused"
    except TimeoutError:
        return name, "dropped"
    except OSError as error:
        return name, "error " + str(error)
targets = json.loads(sys.argv[1])
with ThreadPoolExecutor(len(targets)) as pool:
    print(json.dumps(dict(pool.map(connect, targets))))
"""


def _probe_pod(name: str, namespace: str, labels: dict[str, str], image: str) -> dict:
    """A pod of the services image that only sleeps; Pod Security ``restricted`` admits it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"todo-netpol-probe": "true", **labels}},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "securityContext": {
                "runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", "import time; time.sleep(86400)"],
                    "securityContext": {
                        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                    },
                }
            ],
        },
    }  # fmt: skip


def _run_probe(kubectl, namespace: str, pod: str, targets: dict[str, tuple[str, object]], container=None):
    argv = ["-n", namespace, "exec", pod, *(["-c", container] if container else []), "--"]
    listed = [[name, host, port] for name, (host, port) in targets.items()]
    return json.loads(kubectl(*argv, "python3", "-c", PROBE, json.dumps(listed)))


def _check(kubectl, namespace: str, pod: str, expected: dict[str, tuple[str, object, str]]) -> dict:
    """Probe until every expected "connected"/"resolved" holds (the engine learns a new pod's address
    from the API), then return the outcomes; the caller compares them all."""
    targets = {name: (host, port) for name, (host, port, _) in expected.items()}
    wanted = {name for name, (_, _, outcome) in expected.items() if outcome in ("connected", "resolved")}
    last: dict = {}

    async def allowed_paths_open():
        last.update(await asyncio.to_thread(_run_probe, kubectl, namespace, pod, targets))
        return all(last[name] == expected[name][2] for name in wanted)

    try:
        asyncio.run(eventually(allowed_paths_open, f"{namespace}/{pod}: {sorted(wanted)} open", within=120))
    except BaseException:
        print(f"--- {namespace}/{pod} last outcomes: {last}")
        raise
    return dict(last)


@pytest.fixture(scope="module")
def probes(kind_platform):
    """The probe pods, Ready; deleted (with their namespace) afterwards."""
    kubectl = kind_platform.kubectl
    image = kind_platform.env["TODO_SERVICES_IMAGE"]
    pods = {
        "service": (
            NAMESPACE,
            {"app.kubernetes.io/component": "service", "app.kubernetes.io/name": "netpol-probe"},
        ),
        "outsider": (NAMESPACE, {"app.kubernetes.io/name": "netpol-probe-outsider"}),
        "migration": (
            NAMESPACE,
            {"app.kubernetes.io/component": "migration", "app.kubernetes.io/name": "np"},
        ),
        "prometheus": (MONITORING, {**PROMETHEUS_LABELS, "app.kubernetes.io/instance": "netpol-probe"}),
        "monitoring-other": (MONITORING, {"app.kubernetes.io/name": "netpol-probe-monitoring"}),
        "outside": (OUTSIDE, {"app.kubernetes.io/name": "netpol-probe-outside"}),
    }
    started = time.monotonic()
    kubectl("create", "namespace", OUTSIDE)
    try:
        for role, (namespace, labels) in pods.items():
            kubectl(
                "apply", "-f", "-", input=json.dumps(_probe_pod(f"netpol-{role}", namespace, labels, image))
            )
        for role, (namespace, _) in pods.items():
            kubectl("-n", namespace, "wait", "--for=condition=Ready", f"pod/netpol-{role}", "--timeout=180s")
        print(f"--- probe pods Ready in {time.monotonic() - started:.0f}s")
        yield {role: (namespace, f"netpol-{role}") for role, (namespace, _) in pods.items()}
    finally:
        for namespace in (NAMESPACE, MONITORING):
            kubectl(
                "-n", namespace, "delete", "pod", "-l", "todo-netpol-probe=true", "--wait=false", check=False
            )
        kubectl("delete", "namespace", OUTSIDE, "--wait=false", check=False)


@pytest.fixture(scope="module")
def targets(kind_platform):
    """Addresses of what the policies guard, read from the cluster and the test bed."""
    kubectl = kind_platform.kubectl
    backend = kubectl.json("-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/name=backend")["items"]
    backend = [p for p in backend if p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp")]
    assert backend, "no running backend pod"
    pod_ip = backend[0]["status"]["podIP"]
    database = urlsplit(kind_platform.env["TODO_DATABASE_URL"])
    kafka_host, _, kafka_port = kind_platform.env["TODO_KIND_KAFKA_BOOTSTRAP"].rpartition(":")
    dns = kubectl.json("-n", "kube-system", "get", "service", "kube-dns")["spec"]["clusterIP"]
    sentry = kubectl.json("-n", "dapr-system", "get", "service", "dapr-sentry")["spec"]
    return {
        "backend_pod": backend[0]["metadata"]["name"],
        "app 8000": (pod_ip, 8000),
        "daprd metrics 9090": (pod_ip, 9090),
        "daprd internal 50002": (pod_ip, 50002),
        "daprd HTTP API 3500": (pod_ip, 3500),
        "daprd gRPC API 50001": (pod_ip, 50001),
        "database": (database.hostname, database.port),
        "kafka": (kafka_host, int(kafka_port)),
        "sentry": (sentry["clusterIP"], sentry["ports"][0]["port"]),
        "DNS TCP 53": (dns, 53),
        "DNS lookup": (f"backend.{NAMESPACE}.svc.cluster.local", "dns"),
    }


def _expect(targets: dict, **outcomes: str) -> dict[str, tuple[str, object, str]]:
    return {name.replace("_", " "): (*targets[name.replace("_", " ")], o) for name, o in outcomes.items()}


# What each probe must see: "connected"/"resolved" where a policy allows it, "dropped" where none does.
MATRIX: dict[str, dict[str, str]] = {
    # a pod of the services' set: database, Kafka, control plane, DNS, sidecars' internal port only
    "service": {
        "database": "connected", "kafka": "connected", "sentry": "connected", "DNS TCP 53": "connected",
        "DNS lookup": "resolved", "daprd internal 50002": "connected", "app 8000": "dropped",
        "daprd metrics 9090": "dropped", "daprd HTTP API 3500": "dropped", "daprd gRPC API 50001": "dropped",
    },
    # a migration Job's pod: the database only through its CIDR rule (no selector rule of its own
    # besides DNS, see the module's note), nothing of Kafka or the control plane
    "migration": {
        "database": "connected", "DNS lookup": "resolved", "kafka": "dropped", "sentry": "dropped",
        "daprd internal 50002": "dropped",
    },
    # the application namespace, not a service: DNS only
    "outsider": {
        "DNS TCP 53": "connected", "DNS lookup": "resolved", "database": "dropped", "kafka": "dropped",
        "sentry": "dropped", "app 8000": "dropped", "daprd metrics 9090": "dropped",
        "daprd internal 50002": "dropped", "daprd HTTP API 3500": "dropped",
        "daprd gRPC API 50001": "dropped",
    },
    # Prometheus: the metrics ports (the app serves /metrics on 8000, daprd on 9090), nothing else
    "prometheus": {
        "app 8000": "connected", "daprd metrics 9090": "connected", "daprd internal 50002": "dropped",
        "daprd HTTP API 3500": "dropped", "daprd gRPC API 50001": "dropped",
    },
    # another pod of the monitoring namespace (Alertmanager, Grafana, exporters): not the services
    "monitoring-other": {
        "app 8000": "dropped", "daprd metrics 9090": "dropped", "daprd internal 50002": "dropped",
        "daprd HTTP API 3500": "dropped", "daprd gRPC API 50001": "dropped",
    },
    # any other namespace: nothing of the application; its own egress is free (the database answers)
    "outside": {
        "database": "connected", "app 8000": "dropped", "daprd metrics 9090": "dropped",
        "daprd internal 50002": "dropped", "daprd HTTP API 3500": "dropped",
        "daprd gRPC API 50001": "dropped",
    },
}  # fmt: skip


def test_each_policy_allows_what_it_names_and_drops_the_rest(kind_platform, probes, targets):
    kubectl = kind_platform.kubectl
    started = time.monotonic()
    # The Dapr API listens on the pod's loopback (the injector's --dapr-listen-addresses): up, from inside.
    inside = _run_probe(
        kubectl, NAMESPACE, targets["backend_pod"],
        {"daprd HTTP API 3500": ("127.0.0.1", 3500), "daprd gRPC API 50001": ("127.0.0.1", 50001)},
        container="backend",
    )  # fmt: skip
    assert inside == {"daprd HTTP API 3500": "connected", "daprd gRPC API 50001": "connected"}, inside
    seen = {"backend pod itself": inside}
    failures = []
    for role, outcomes in MATRIX.items():
        namespace, pod = probes[role]
        expected = {name: (*targets[name], outcome) for name, outcome in outcomes.items()}
        seen[role] = _check(kubectl, namespace, pod, expected)
        for name, outcome in outcomes.items():
            mark = "ok " if seen[role][name] == outcome else "BAD"
            print(f"{mark} {role:>16} -> {name:<22} {seen[role][name]:<10} (expected {outcome})")
            if mark == "BAD":
                failures.append(f"{role} -> {name}: {seen[role][name]}, expected {outcome}")
    # Every dropped target is up: some source connects to it (a drop is the policy, not a dead port).
    reachable = {name for outcomes in seen.values() for name, o in outcomes.items() if o == "connected"}
    dropped = {name for outcomes in seen.values() for name, o in outcomes.items() if o == "dropped"}
    assert dropped <= reachable, dropped - reachable
    count = sum(map(len, MATRIX.values())) + len(inside)
    print(f"--- network policy checks: {count} connections probed in {time.monotonic() - started:.0f}s")
    assert not failures, failures


def test_enforcement_runs_as_the_node_image_ships_it(kind_platform):
    """kube-network-policies listens on its queue and the pods' packets are queued to it."""
    kubectl = kind_platform.kubectl
    daemonset = kubectl.json("-n", "kube-system", "get", "daemonset", "kube-network-policies")
    assert daemonset["status"]["numberReady"] == daemonset["status"]["desiredNumberScheduled"] >= 1
    logs = kubectl("-n", "kube-system", "logs", "daemonset/kube-network-policies", "-c", "nfqueue-rules")
    assert "go to netfilter queue" in logs, logs
