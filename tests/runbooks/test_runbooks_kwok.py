"""The Kubernetes runbooks against a platform deployed on the test bed's kwok cluster (the molecule
kwok scenario's converge, inventory and host variables): status, restart-service, rotate-secrets,
diagnostics and, last, teardown. Each test checks the runbook's effect on the cluster's objects.
The tests run in file order and share one deployment (teardown removes it)."""

from __future__ import annotations

import base64
import json
import tarfile
import time

import pytest
from deploy.deploy_support import ROOT, TEST_SECRETS, run, tool_env
from runbook_support import output_of, run_runbook

pytestmark = [pytest.mark.testbed, pytest.mark.slow, pytest.mark.timeout(2400)]

SERVICES = ["backend", "audit", "recurring-task", "notification", "sync"]


@pytest.fixture(scope="module")
def kwok_inventory(tmp_path_factory):
    """The molecule kwok scenario's inventory: the kind group_vars, the kwok host_vars."""
    inv = tmp_path_factory.mktemp("kwok-inventory")
    (inv / "hosts.yml").write_text("todo_platform:\n  hosts:\n    todo-kwok: {}\n")
    (inv / "group_vars").symlink_to(ROOT / "inventories/kind/group_vars")
    (inv / "host_vars").symlink_to(ROOT / "molecule/kwok/inventory/host_vars")
    return inv


@pytest.fixture(scope="module")
def deployed(kube, kwok_inventory):
    """The whole platform converged on kwok (molecule/kwok/converge.yml: prepare + site.yml)."""
    from testbed import gobuild

    env = tool_env(kube)
    # the capacity phase renders the charts with the pinned helm (and the roles may install them)
    env["PATH"] = f"{gobuild.TOOLS['helm'].binary().parent}:{env['PATH']}"
    for ns in ("todo", "kafka", "dapr-system", "monitoring", "logging", "todo-gateway"):
        kube.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=true", check=False)
    result = run(["ansible-playbook", "molecule/kwok/converge.yml", "-i", str(kwok_inventory)], env)
    assert result.returncode == 0, output_of(result)
    return env


def kget(kube, *args: str) -> dict:
    return json.loads(kube.kubectl("get", *args, "-o", "json").stdout)


def pods_of(kube, service: str) -> list[dict]:
    return kget(kube, "pods", "-n", "todo", "-l", f"app.kubernetes.io/name={service}")["items"]


def test_status_reports_a_pod_that_is_not_ready(kube, deployed, kwok_inventory):
    result = run_runbook("status", kwok_inventory, env=deployed)
    assert result.returncode == 0, output_of(result)

    pod = pods_of(kube, "audit")[0]["metadata"]["name"]
    patch = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "ContainersNotReady",
                    "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            ]
        }
    }
    kube.kubectl(
        "patch", "pod", pod, "-n", "todo", "--subresource=status", "--type=strategic", "-p", json.dumps(patch)
    )
    try:
        result = run_runbook("status", kwok_inventory, env=deployed)
        assert result.returncode != 0, "status passed with a pod not Ready"
        assert pod in result.stdout and "ContainersNotReady" in result.stdout, output_of(result)
    finally:
        # a new pod replaces it and kwok marks that one Ready
        kube.kubectl("delete", "pod", pod, "-n", "todo", "--wait=true")


def newest_hash(kube, name: str, namespace: str = "todo") -> str:
    """The pod-template-hash of the Deployment's current revision."""
    dep = kget(kube, "deployment", name, "-n", namespace)
    revision = dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
    for rs in kget(kube, "replicasets", "-n", namespace)["items"]:
        owners = {o["uid"] for o in rs["metadata"].get("ownerReferences", [])}
        if (
            dep["metadata"]["uid"] in owners
            and rs["metadata"]["annotations"].get("deployment.kubernetes.io/revision") == revision
        ):
            return rs["metadata"]["labels"]["pod-template-hash"]
    raise AssertionError(f"no ReplicaSet of revision {revision} for {name}")


def assert_only_new_pods_serve(kube, service: str, old_hash: str) -> None:
    """Right after a runbook returned: every pod of the service is of the new ReplicaSet and Ready."""
    pods = pods_of(kube, service)
    wanted = kget(kube, "deployment", service, "-n", "todo")["spec"]["replicas"]
    hashes = {p["metadata"]["labels"]["pod-template-hash"] for p in pods}
    assert hashes == {newest_hash(kube, service)} and old_hash not in hashes, (service, hashes, old_hash)
    assert len(pods) == wanted
    for p in pods:
        assert "deletionTimestamp" not in p["metadata"]
        assert {"type": "Ready", "status": "True"}.items() <= next(
            c for c in p["status"]["conditions"] if c["type"] == "Ready"
        ).items()


def test_restart_service_returns_when_only_new_pods_serve(kube, deployed, kwok_inventory):
    # No node takes the new pod: the old one keeps serving (and the Deployment stays Available), the
    # rollout cannot finish, so the runbook must not report success.
    nodes = [n["metadata"]["name"] for n in kget(kube, "nodes")["items"]]
    kube.kubectl("cordon", *nodes)
    try:
        result = run_runbook(
            "restart-service",
            kwok_inventory,
            "-e",
            "service=audit",
            "-e",
            "restart_wait_timeout=20",
            env=deployed,
        )
    finally:
        kube.kubectl("uncordon", *nodes)
    assert result.returncode != 0, "restart-service succeeded while its new pod could not start"
    assert "rollout not over" in result.stdout and "audit" in result.stdout, output_of(result)

    old_hash = newest_hash(kube, "audit")
    result = run_runbook("restart-service", kwok_inventory, "-e", "service=audit", env=deployed)
    assert result.returncode == 0, output_of(result)
    assert_only_new_pods_serve(kube, "audit", old_hash)

    result = run_runbook("restart-service", kwok_inventory, "-e", "service=nope", env=deployed)
    assert result.returncode != 0 and "pass -e service=<backend" in result.stdout


def secret_values(kube, namespace: str, name: str) -> dict[str, str]:
    data = kget(kube, "secret", name, "-n", namespace).get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


ROTATED = {
    "TODO_JWT_SECRET": "rotated-jwt-secret-9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "TODO_DAPR_API_TOKEN": "rotated-dapr-api-token-5566778899",
    "TODO_APP_API_TOKEN": "rotated-app-api-token-1122334455",
    "TODO_POSTGRES_PASSWORD": "rotated-postgres-password-0099",
    "TODO_GRAFANA_ADMIN_PASSWORD": "rotated-grafana-admin-password-77",
}


def test_rotate_secrets_replaces_every_credential_and_rolls_out(kube, deployed, kwok_inventory):
    old_hashes = {s: newest_hash(kube, s) for s in SERVICES}
    old_role_passwords = role_passwords(kube)
    env = dict(deployed, **ROTATED)
    # Grafana runs when the scenario installs the charts (molecule/kwok host_vars)
    grafana = (
        kube.kubectl(
            "get", "deployment", "kube-prometheus-stack-grafana", "-n", "monitoring", check=False
        ).returncode
        == 0
    )
    grafana_hash = newest_hash(kube, "kube-prometheus-stack-grafana", "monitoring") if grafana else None
    # kwok runs no container to exec into for Grafana's stored password
    no_exec = ("-e", "rotate_grafana_reset_admin_password=false")
    result = run_runbook("rotate-secrets", kwok_inventory, *no_exec, env=env, timeout=1800)
    assert result.returncode == 0, output_of(result)
    if grafana:  # it read the old admin password at start: rolled out
        assert newest_hash(kube, "kube-prometheus-stack-grafana", "monitoring") != grafana_hash
    for value in ROTATED.values():  # the run's output never shows a credential
        assert value not in result.stdout + result.stderr

    app = secret_values(kube, "todo", "todo-app")
    assert app["jwt-secret"] == ROTATED["TODO_JWT_SECRET"]
    # the JWT key before keeps verifying its tokens for the overlap, under its key id
    assert app["jwt-previous-secret"] == TEST_SECRETS["TODO_JWT_SECRET"]
    assert (app["jwt-key-id"], app["jwt-previous-key-id"]) == ("2", "1")
    for service in SERVICES:
        assert jwt_env(kube, service) == {
            "JWT_KEY_ID": "2",
            "JWT_PREVIOUS_KEY_ID": "1",
            "JWT_PREVIOUS_SECRET_FILE": "/var/run/secrets/todo/jwt-previous-secret",
        }
    assert f":{ROTATED['TODO_POSTGRES_PASSWORD']}@" in app["database-url"]
    assert secret_values(kube, "todo", "postgres")["password"] == ROTATED["TODO_POSTGRES_PASSWORD"]
    # a new owner password gives every service's own database role a new one too (roles/apps prepare.yml)
    new_role_passwords = role_passwords(kube)
    assert all(new_role_passwords[s] != old_role_passwords[s] for s in SERVICES), "a role password stayed"
    assert secret_values(kube, "todo", "todo-dapr-api-token")["token"] == ROTATED["TODO_DAPR_API_TOKEN"]
    assert secret_values(kube, "todo", "todo-app-api-token")["token"] == ROTATED["TODO_APP_API_TOKEN"]
    grafana = secret_values(kube, "monitoring", "grafana-admin")
    assert ROTATED["TODO_GRAFANA_ADMIN_PASSWORD"] in grafana.values()
    # the database password was handed over through a Secret that is gone again
    assert kube.kubectl("get", "secret", "postgres-rotation", "-n", "todo", check=False).returncode != 0
    for service in SERVICES:
        assert_only_new_pods_serve(kube, service, old_hashes[service])
        template = kget(kube, "deployment", service, "-n", "todo")["spec"]["template"]
        assert "todo.platform/secrets-checksum" in template["metadata"]["annotations"]
        # the previous key leaves the Secret when the overlap ends; a pod of this template started
        # after that must still start, so its projection is optional
        sources = next(v for v in template["spec"]["volumes"] if v["name"] == "secrets")["projected"][
            "sources"
        ]
        previous = [
            s["secret"] for s in sources if "jwt-previous-secret" in str(s.get("secret", {}).get("items"))
        ]
        assert [p.get("optional") for p in previous] == [True], sources

    # the same values again: the checksums stay, the runbook rolls nothing out (a changed services
    # image would still roll out through the apps phase, so the ReplicaSets are not compared)
    def checksums():
        return {
            s: kget(kube, "deployment", s, "-n", "todo")["spec"]["template"]["metadata"]["annotations"][
                "todo.platform/secrets-checksum"
            ]
            for s in SERVICES
        }

    before = checksums()
    result = run_runbook("rotate-secrets", kwok_inventory, *no_exec, env=env, timeout=1800)
    assert result.returncode == 0, output_of(result)
    assert checksums() == before
    assert role_passwords(kube) == new_role_passwords
    shown = result.stdout.split("TASK [Show what rolled out]", 1)[1]
    assert "msg: []" in shown.split("PLAY RECAP", 1)[0], output_of(result)
    assert secret_values(kube, "todo", "todo-app")["jwt-previous-key-id"] == "1"  # still in its overlap


def role_passwords(kube) -> dict[str, str]:
    """Each service's database role password, checked against the URL its pods read."""
    found = {}
    for service in SERVICES:
        values = secret_values(kube, "todo", f"todo-db-{service}")
        assert f":{values['password']}@" in values["database-url"]
        found[service] = values["password"]
    return found


def jwt_env(kube, service: str) -> dict[str, str]:
    containers = kget(kube, "deployment", service, "-n", "todo")["spec"]["template"]["spec"]["containers"]
    env = next(c for c in containers if c["name"] == service)["env"]
    return {
        e["name"]: e["value"] for e in env if e["name"].startswith("JWT_") and e["name"] != "JWT_SECRET_FILE"
    }


def test_rotate_secrets_drops_the_previous_jwt_key_after_the_overlap(kube, deployed, kwok_inventory):
    # the run after the overlap (here: overlap 0, the same as one that has elapsed) drops the key
    old_hashes = {s: newest_hash(kube, s) for s in SERVICES}
    env = dict(deployed, **ROTATED)
    result = run_runbook(
        "rotate-secrets",
        kwok_inventory,
        "-e",
        "rotate_grafana_reset_admin_password=false",
        "-e",
        "apps_jwt_rotation_overlap_seconds=0",
        env=env,
        timeout=1800,
    )
    assert result.returncode == 0, output_of(result)
    app = secret_values(kube, "todo", "todo-app")
    assert "jwt-previous-secret" not in app and "jwt-previous-key-id" not in app, sorted(app)
    assert app["jwt-key-id"] == "2"
    annotations = kget(kube, "secret", "todo-app", "-n", "todo")["metadata"].get("annotations") or {}
    assert "todo.platform/jwt-rotated-at" not in annotations
    for service in SERVICES:
        assert jwt_env(kube, service) == {"JWT_KEY_ID": "2"}
        assert_only_new_pods_serve(kube, service, old_hashes[service])

    result = run_runbook(
        "rotate-secrets",
        kwok_inventory,
        "-e",
        "rotate_grafana_reset_admin_password=false",
        "-e",
        "apps_jwt_rotation_overlap_seconds=soon",
        env=env,
        timeout=1800,
    )
    assert result.returncode != 0
    expected = "apps_jwt_rotation_overlap_seconds must be a whole number of seconds"
    assert expected in result.stdout, output_of(result)


PLANTED = {
    "secret": "planted-secret-value-7f3a9c2e41",
    "literal_env": "literal-jwt-value-99887766",
    "url_password": "otherpw123",
    "component": "inline-component-pw-123",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXBsYW50ZWQ",
}


def test_diagnostics_bundle_has_the_state_with_secrets_redacted(kube, deployed, kwok_inventory, tmp_path):
    jwt_secret = secret_values(kube, "todo", "todo-app")["jwt-secret"]  # as deployed or rotated
    manifests = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "planted", "namespace": "todo"},
            "stringData": {"value": PLANTED["secret"]},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "planted", "namespace": "todo"},
            "data": {
                "app.properties": f"note={PLANTED['secret']}\nurl=postgresql://u:{PLANTED['url_password']}@db/x",
                "jwt": jwt_secret,
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "planted", "namespace": "todo"},
            "spec": {
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "app",
                        "image": "example.invalid/planted:1",
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "env": [
                            {"name": "JWT_SECRET", "value": PLANTED["literal_env"]},
                            {"name": "PLAIN_SETTING", "value": "visible-value"},
                        ],
                    }
                ],
            },
        },
        {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "planted", "namespace": "todo"},
            "spec": {
                "type": "pubsub.kafka",
                "version": "v1",
                "metadata": [{"name": "saslPassword", "value": PLANTED["component"]}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "planted.1", "namespace": "todo"},
            "involvedObject": {"kind": "Pod", "name": "planted", "namespace": "todo"},
            "reason": "Planted",
            "type": "Warning",
            "message": f"request with Authorization: Bearer {PLANTED['jwt']} failed",
        },
    ]
    planted = {"apiVersion": "v1", "kind": "List", "items": manifests}
    (tmp_path / "planted.json").write_text(json.dumps(planted))
    kube.kubectl("apply", "-f", str(tmp_path / "planted.json"))
    dest = tmp_path / "bundle.tar.gz"
    try:
        result = run_runbook("diagnostics", kwok_inventory, "-e", f"diagnostics_dest={dest}", env=deployed)
    finally:
        kube.kubectl("delete", "-f", str(tmp_path / "planted.json"), "--wait=false", check=False)
    assert result.returncode == 0, output_of(result)

    with tarfile.open(dest) as tar:
        files = {
            m.name.split("/", 1)[1]: tar.extractfile(m).read().decode()
            for m in tar.getmembers()
            if m.isfile()
        }
    everything = "\n".join(files.values())
    secrets = [*PLANTED.values(), jwt_secret] + [v for v in TEST_SECRETS.values() if len(v) >= 6]
    leaked = [v for v in secrets if v in everything]
    assert not leaked, f"secrets in the bundle: {leaked}"
    assert "visible-value" in everything  # ordinary settings stay readable
    pods = json.loads(files["todo/pods.json"])
    app_of = {
        p["metadata"]["name"]: p["metadata"].get("labels", {}).get("app.kubernetes.io/name") for p in pods
    }
    assert set(app_of.values()) >= set(SERVICES)
    assert "Planted" in files["todo/events.json"]
    assert json.loads(files["versions.json"])["collection_todo_platform"]
    for name in (
        "outbox.json",
        "consumer_lag.json",
        "dead_letters.json",
        "cluster/version.json",
        "missing.json",
    ):
        assert name in files, sorted(files)
    # every service container's log was asked for: it is in the bundle or missing.json says why not
    backend = next(name for name, app in app_of.items() if app == "backend")
    log = f"todo/logs/{backend}/backend.log"
    assert log in files or log in files["missing.json"]


def crd_names(kube) -> set[str]:
    return {c["metadata"]["name"] for c in kget(kube, "crd")["items"]}


def test_teardown_keeps_data_when_asked_then_removes_everything(kube, deployed, kwok_inventory):
    pvcs = kget(kube, "pvc", "-n", "todo")["items"]
    assert pvcs, "the deployment made no volume claim to keep"
    result = run_runbook(
        "teardown", kwok_inventory, "-e", "teardown_keep_data=true", env=deployed, timeout=1800
    )
    assert result.returncode == 0, output_of(result)
    for ns in ("todo", "monitoring", "kafka", "dapr-system"):
        assert kget(kube, "deployments", "-n", ns)["items"] == [], ns
        assert kget(kube, "statefulsets", "-n", ns)["items"] == [], ns
    assert {p["metadata"]["name"] for p in kget(kube, "pvc", "-n", "todo")["items"]} == {
        p["metadata"]["name"] for p in pvcs
    }
    assert secret_values(kube, "todo", "postgres")["password"]  # the key to the kept data
    assert any(name.endswith(".dapr.io") for name in crd_names(kube))

    result = run_runbook("teardown", kwok_inventory, env=deployed, timeout=1800)
    assert result.returncode == 0, output_of(result)
    namespaces = {n["metadata"]["name"] for n in kget(kube, "namespaces")["items"]}
    assert not namespaces & {"todo", "kafka", "dapr-system", "monitoring", "logging"}, namespaces
    left = [
        n
        for n in crd_names(kube)
        if n.endswith((".dapr.io", ".strimzi.io", ".monitoring.coreos.com", ".gateway.networking.k8s.io"))
    ]
    assert left == []
