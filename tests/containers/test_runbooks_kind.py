"""The day-2 runbooks against real pods on the converged kind cluster (issue 16 item 4, issue 18).

Each test runs a runbook as an operator does (``kind_platform.playbook``, the scenario's inventory)
and checks its effect on the pods:

* ``status``: passes on the converged platform, fails naming a pod that is not Ready (a copy of the
  audit Deployment without its Dapr sidecar: its /readyz answers 503, so the pod never turns Ready);
* ``scale``: audit to 2 replicas and the backend's autoscaler to at least 2; every pod answers;
* ``restart-service``: returns only when every backend pod is of the new ReplicaSet and answers, and
  a steady load through the backend Service saw no failed request meanwhile;
* ``rotate-secrets``: a new JWT key; tokens of the old key still work on every pod during the
  overlap, new tokens carry the new ``kid``; rotated back to the inventory's key with the overlap
  over, the tokens of both keys before answer 401 on every pod and a new login works. Two runs
  (each rolls out every service, about 4 min here), the second putting the key back.

Requests go as a kind user's do: through ``kubectl port-forward`` (the kind inventory's exposure;
the NetworkPolicies admit no in-cluster client of the API there). A forward to a Service reaches one
of its pods, so each call opens its own; a pod's own /readyz goes through a forward to that pod; the
steady load during the restart follows the Service's EndpointSlices pod by pod
(``kind_load.ServiceLoad``), as kube-proxy does. Everything the tests change is put back (the copy
deleted, replicas and autoscaler bounds restored, the JWT key rotated back).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time

import httpx
import pytest
from containers import kind_load
from e2e.e2e_support import eventually

pytestmark = [pytest.mark.testbed, pytest.mark.slow, pytest.mark.timeout(7200)]

NAMESPACE = "todo"


def poll(what: str, probe, within: float = 300):
    async def attempt():
        return probe()

    return asyncio.run(eventually(attempt, what, within))


class Client:
    """Calls to the services' API through ``kubectl port-forward``, one forward per call: a forward
    to a Service stays on the pod it picked, which a rollout replaces."""

    def __init__(self, kubectl):
        self.kubectl = kubectl

    def call(
        self, service: str, method: str, path: str, token: str | None = None, body: dict | None = None
    ) -> tuple[int, str]:
        with kind_load.forward(self.kubectl, f"svc/{service}", 80) as url:
            return send(url, method, path, token, body)

    def sign_in(self, label: str) -> str:
        email, password = f"runbooks-{label}-{secrets.token_hex(4)}@example.test", secrets.token_urlsafe(18)
        status, text = self.call(
            "backend", "POST", "/api/auth/register", body={"email": email, "password": password}
        )
        assert status == 201, (status, text)
        status, text = self.call(
            "backend", "POST", "/api/auth/login", body={"email": email, "password": password}
        )
        assert status == 200, (status, text)
        return json.loads(text)["access_token"]

    def pod_call(self, pod: str, path: str, token: str | None = None) -> tuple[int, str]:
        """GET ``path`` on that pod itself."""
        with kind_load.forward(self.kubectl, f"pod/{pod}", 8000) as url:
            return send(url, "GET", path, token)


def send(url: str, method: str, path: str, token: str | None = None, body: dict | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    reply = httpx.request(method, url + path, json=body, headers=headers, timeout=30)
    return reply.status_code, reply.text


@pytest.fixture(scope="module")
def client(kind_platform):
    return Client(kind_platform.kubectl)


def run(kind_platform, runbook: str, *args: str, name: str | None = None) -> str:
    started = time.monotonic()
    rc, out = kind_platform.playbook(f"playbooks/runbooks/{runbook}.yml", *args, name=name)
    print(f"--- {name or runbook} {' '.join(args)}: rc {rc}, {time.monotonic() - started:.0f} s")
    assert rc == 0, out[-6000:]
    return out


def pods(kubectl, service: str) -> list[dict]:
    return kubectl.json("-n", NAMESPACE, "get", "pods", "-l", f"app.kubernetes.io/name={service}")["items"]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def newest_hash(kubectl, service: str) -> str:
    """The pod-template-hash of the Deployment's current revision."""
    dep = kubectl.json("-n", NAMESPACE, "get", "deployment", service)
    revision = dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
    for rs in kubectl.json("-n", NAMESPACE, "get", "replicasets")["items"]:
        owners = {o["uid"] for o in rs["metadata"].get("ownerReferences", [])}
        if (
            dep["metadata"]["uid"] in owners
            and rs["metadata"]["annotations"].get("deployment.kubernetes.io/revision") == revision
        ):
            return rs["metadata"]["labels"]["pod-template-hash"]
    raise AssertionError(f"no ReplicaSet of revision {revision} for {service}")


def assert_pods_serve(kubectl, client: Client, service: str, count: int) -> list[str]:
    """Right now: ``count`` pods, all of the current revision, Ready, none terminating, and each
    answers /readyz 200 on its own address."""
    current = newest_hash(kubectl, service)
    found = pods(kubectl, service)
    summary = [
        (
            p["metadata"]["name"],
            p["metadata"]["labels"]["pod-template-hash"],
            ready(p),
            "deletionTimestamp" in p["metadata"],
        )
        for p in found
    ]
    assert len(found) == count and all(h == current and r and not d for _, h, r, d in summary), (
        current,
        summary,
    )
    for pod in found:
        status, text = client.pod_call(pod["metadata"]["name"], "/readyz")
        assert status == 200, (pod["metadata"]["name"], status, text)
    return [p["metadata"]["name"] for p in found]


def test_status_reports_a_pod_that_is_not_ready(kind_platform):
    kubectl = kind_platform.kubectl
    run(kind_platform, "status", name="status-healthy")

    # audit's pod spec under a name of its own, without the Dapr sidecar: the service starts, its
    # /readyz checks the sidecar and answers 503, so the pod runs but never turns Ready.
    name = "audit-status-check"
    source = kubectl.json("-n", NAMESPACE, "get", "deployment", "audit")
    spec = source["spec"]
    spec["replicas"] = 1
    spec["selector"] = {"matchLabels": {"app.kubernetes.io/name": name}}
    spec["template"]["metadata"]["labels"]["app.kubernetes.io/name"] = name
    spec["template"]["metadata"]["annotations"]["dapr.io/enabled"] = "false"
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": source["metadata"]["labels"]},
        "spec": spec,
    }
    kubectl("apply", "-f", "-", input=json.dumps(dep))
    try:
        pod = poll(
            f"a running pod of {name}",
            lambda: next(
                (p["metadata"]["name"] for p in pods(kubectl, name) if p["status"].get("phase") == "Running"),
                None,
            ),
        )
        rc, out = kind_platform.playbook("playbooks/runbooks/status.yml", name="status-not-ready")
        assert rc != 0, "status passed with a pod that is not Ready:\n" + out[-4000:]
        assert pod in out and name in out, out[-4000:]
        report = out.split("pods not Ready:", 1)[1].splitlines()[0]
        print(f"--- status with {pod} not Ready: rc {rc}; pods not Ready: {report.strip()[:300]}")
    finally:
        kubectl("-n", NAMESPACE, "delete", "deployment", name, "--ignore-not-found", "--wait=true")
        poll(f"the pods of {name} gone", lambda: not pods(kubectl, name), within=120)
    run(kind_platform, "status", name="status-healthy-again")


def test_scale_changes_the_replicas_and_the_pods_serve(kind_platform, client):
    kubectl = kind_platform.kubectl
    replicas = kubectl.json("-n", NAMESPACE, "get", "deployment", "audit")["spec"]["replicas"]
    try:
        run(kind_platform, "scale", "-e", "service=audit", "-e", "replicas=2", name="scale-audit-2")
        # the runbook waited: both pods serve when it returns
        print(f"--- audit pods serving: {assert_pods_serve(kubectl, client, 'audit', 2)}")
    finally:
        run(
            kind_platform,
            "scale",
            "-e",
            "service=audit",
            "-e",
            f"replicas={replicas}",
            name="scale-audit-back",
        )
    poll(f"audit back to {replicas} pod(s)", lambda: len(pods(kubectl, "audit")) == replicas, within=180)
    assert_pods_serve(kubectl, client, "audit", replicas)


@pytest.fixture
def backend_min_two(kind_platform):
    """The backend's autoscaler at min 2 (through the scale runbook), its bounds restored after."""
    kubectl = kind_platform.kubectl
    hpa = kubectl.json("-n", NAMESPACE, "get", "hpa", "backend")["spec"]
    bounds = (hpa.get("minReplicas", 1), hpa["maxReplicas"])
    run(
        kind_platform,
        "scale",
        "-e",
        "service=backend",
        "-e",
        "min_replicas=2",
        "-e",
        f"max_replicas={max(2, bounds[1])}",
        name="scale-backend-min-2",
    )
    try:
        assert kubectl.json("-n", NAMESPACE, "get", "hpa", "backend")["spec"]["minReplicas"] == 2
        # the autoscaler raises the replicas to its new minimum
        poll("two backend pods Ready", lambda: sum(ready(p) for p in pods(kubectl, "backend")) >= 2)
        yield
    finally:
        run(
            kind_platform,
            "scale",
            "-e",
            "service=backend",
            "-e",
            f"min_replicas={bounds[0]}",
            "-e",
            f"max_replicas={bounds[1]}",
            name="scale-backend-back",
        )


def test_restart_service_returns_when_new_pods_serve_and_no_request_fails(
    kind_platform, client, backend_min_two
):
    kubectl = kind_platform.kubectl
    old_hash = newest_hash(kubectl, "backend")
    old_pods = {p["metadata"]["name"] for p in pods(kubectl, "backend")}
    load = kind_load.ServiceLoad(kubectl, "backend", "/api/tasks", client.sign_in("restart"))
    with load:
        run(kind_platform, "restart-service", "-e", "service=backend", name="restart-backend")
        # the moment it returned: only new pods, all Ready and answering
        wanted = kubectl.json("-n", NAMESPACE, "get", "deployment", "backend")["spec"]["replicas"]
        serving = assert_pods_serve(kubectl, client, "backend", wanted)
    summary = load.stop()
    print(
        f"--- restart-backend: old pods {sorted(old_pods)} -> {serving}; load through the Service: {summary}"
    )
    assert newest_hash(kubectl, "backend") != old_hash and not old_pods & set(serving)
    assert summary["total"] > 0 and summary["failures"] == [], summary


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def app_secret(kubectl) -> tuple[dict[str, str], dict[str, str]]:
    secret = kubectl.json("-n", NAMESPACE, "get", "secret", "todo-app")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    return data, secret["metadata"].get("annotations") or {}


def answers(kubectl, client: Client, token: str) -> dict[str, list[int]]:
    """What every serving pod of the backend and of audit answers a request carrying ``token``
    (the statuses, once each)."""
    paths = {"backend": "/api/tasks", "audit": "/api/audit"}
    found = {}
    for service, path in paths.items():
        serving = [p["metadata"]["name"] for p in pods(kubectl, service)
                   if ready(p) and "deletionTimestamp" not in p["metadata"]]  # fmt: skip
        assert serving, f"no serving pod of {service}"
        found[service] = sorted({client.pod_call(pod, path, token)[0] for pod in serving})
    return found


#: every pod of both services answered 200
ALL_OK = {"backend": [200], "audit": [200]}


def test_rotate_secrets_keeps_old_tokens_for_the_overlap_and_refuses_dropped_keys(kind_platform, client):
    kubectl, env = kind_platform.kubectl, kind_platform.env
    original = env["TODO_JWT_SECRET"]
    old_token = client.sign_in("before-rotation")
    before, _ = app_secret(kubectl)
    old_kid = before.get("jwt-key-id", "1")
    assert kid_of(old_token) == old_kid and answers(kubectl, client, old_token) == ALL_OK
    env["TODO_JWT_SECRET"] = "rotated-in-kind-" + secrets.token_urlsafe(32)
    try:
        out = run(kind_platform, "rotate-secrets", name="rotate-secrets-new-key")
        assert env["TODO_JWT_SECRET"] not in out and original not in out
        data, annotations = app_secret(kubectl)
        new_kid = str(int(old_kid) + 1)
        assert data["jwt-secret"] == env["TODO_JWT_SECRET"] and data["jwt-key-id"] == new_kid
        assert data["jwt-previous-secret"] == original and data["jwt-previous-key-id"] == old_kid
        assert "todo.platform/jwt-rotated-at" in annotations
        # during the overlap: the old token still works on every pod (the rollout is over), new
        # tokens are signed with the new key
        during = answers(kubectl, client, old_token)
        new_token = client.sign_in("after-rotation")
        print(
            f"--- overlap: old token (kid {old_kid}) {during}; new token kid {kid_of(new_token)} "
            f"{answers(kubectl, client, new_token)}"
        )
        assert during == ALL_OK
        assert kid_of(new_token) == new_kid and answers(kubectl, client, new_token) == ALL_OK
    finally:
        # back to the inventory's key with the overlap over at once (the filter's rule for a run
        # after the overlap has elapsed, tests/runbooks on kwok): the cluster as the converge left it
        env["TODO_JWT_SECRET"] = original
        run(
            kind_platform,
            "rotate-secrets",
            "-e",
            "apps_jwt_rotation_overlap_seconds=0",
            name="rotate-secrets-back",
        )
    data, annotations = app_secret(kubectl)
    assert data["jwt-secret"] == original and "jwt-previous-secret" not in data, sorted(data)
    assert "todo.platform/jwt-rotated-at" not in annotations
    # no previous key any more: the tokens of both keys before are refused on every pod, a new
    # login works
    refused = {"backend": [401], "audit": [401]}
    after = {f"kid {kid_of(t)}": answers(kubectl, client, t) for t in (old_token, new_token)}
    fresh = client.sign_in("rotated-back")
    print(f"--- rotated back: tokens before {after}; new login kid {kid_of(fresh)}")
    assert after == {f"kid {old_kid}": refused, f"kid {new_kid}": refused}
    assert kid_of(fresh) == data["jwt-key-id"] and answers(kubectl, client, fresh) == ALL_OK
