"""Each service connects to PostgreSQL as its own role (issue 17, item 11): the apps role gives every
Deployment a Secret of its own (todo-db-<service>: its role's URL) and keeps the owner's URL for the
migration Job, which creates the roles and grants (todo-migrate all with DB_SERVICE_ROLE_PREFIX).

Rendered objects (tests/deploy/render_apps.yml, no cluster) for the in-cluster and an external
database, then the role's prepare and migrate phases applied to the test bed's kwok API server:
passwords made once and kept, rotated on request or with the owner's password, never printed."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from deploy_support import ROOT, TEST_SECRETS, recap_changed, render_apps, run, tool_env
from testbed.polling import eventually

PACKAGES = {
    "backend": "backend",
    "audit": "audit",
    "recurring-task": "recurring",
    "notification": "notification",
    "sync": "sync",
}
GIVEN = {service: f"given-{service}-password-0123456789" for service in PACKAGES}
EXTERNAL_URL = "postgresql://todo_migrate:owner-pw-0123456789@db.example.test:6432/todo?sslmode=require"


def secret_refs(pod_spec: dict) -> dict[str, list[str] | None]:
    """Every Secret a pod reads: name -> the keys it takes (None: all of them)."""
    refs: dict[str, list[str] | None] = {}

    def add(name: str, keys: list[str] | None) -> None:
        if name in refs and (refs[name] is None or keys is None):
            refs[name] = None
        else:
            refs[name] = [*(refs.get(name) or []), *(keys or [])] if keys is not None else None

    for volume in pod_spec.get("volumes", []):
        sources = [volume] if "secret" in volume else volume.get("projected", {}).get("sources", [])
        for source in sources:
            if "secret" in source:
                secret = source["secret"]
                name = secret.get("name") or secret.get("secretName")
                add(name, [i["key"] for i in secret["items"]] if "items" in secret else None)
    for container in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                add(ref["name"], [ref["key"]])
        for env_from in container.get("envFrom", []):
            if "secretRef" in env_from:
                add(env_from["secretRef"]["name"], None)
    return refs


def rendered(out: Path) -> tuple[dict[str, dict], dict, dict[str, dict]]:
    """(Deployments by name, the migration Job, Secrets by name) of a render."""
    services = json.loads((out / "services.json").read_text())
    [job] = json.loads((out / "migrate.json").read_text())
    secrets = {s["metadata"]["name"]: s for s in json.loads((out / "secrets.json").read_text())}
    deployments = {o["metadata"]["name"]: o for o in services if o["kind"] == "Deployment"}
    return deployments, job, secrets


def assert_least_privilege(out: Path, owner_url: str) -> None:
    deployments, job, secrets = rendered(out)
    assert sorted(deployments) == sorted(PACKAGES)
    owner_holders = [n for n, s in secrets.items() if owner_url in s.get("stringData", {}).values()]
    assert owner_holders == ["todo-app"], owner_holders
    owner = urlsplit(owner_url)
    for service, package in PACKAGES.items():
        refs = secret_refs(deployments[service]["spec"]["template"]["spec"])
        # its own database Secret, no other service's, and of todo-app never the owner's URL
        assert [n for n in refs if n.startswith("todo-db-")] == [f"todo-db-{service}"], (service, refs)
        assert refs[f"todo-db-{service}"] == ["database-url"], (service, refs)
        assert refs["todo-app"] is not None and "database-url" not in refs["todo-app"], (service, refs)
        url = urlsplit(secrets[f"todo-db-{service}"]["stringData"]["database-url"])
        assert (url.username, unquote(url.password or "")) == (
            f"todo_{package}",
            secrets[f"todo-db-{service}"]["stringData"]["password"],
        )
        assert (url.scheme, url.hostname, url.port, url.path, url.query) == (
            owner.scheme,
            owner.hostname,
            owner.port,
            owner.path,
            owner.query,
        )
    # the migration Job: the owner's URL and every role's password, with the prefix that makes the roles
    spec = job["spec"]["template"]["spec"]
    refs = secret_refs(spec)
    assert refs["todo-app"] is None
    assert {n: k for n, k in refs.items() if n.startswith("todo-db-")} == {
        f"todo-db-{service}": ["password"] for service in PACKAGES
    }
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["DB_SERVICE_ROLE_PREFIX"] == "todo"
    assert env["DATABASE_URL_FILE"] == "/var/run/secrets/todo/database-url"
    for package in PACKAGES.values():
        assert env[f"DB_PASSWORD_{package.upper()}_FILE"] == f"/var/run/secrets/todo/db-password-{package}"


def test_each_deployment_reads_only_its_own_role_in_cluster(tmp_path: Path) -> None:
    done = render_apps("kind", tmp_path, extra_vars={"apps_database_service_passwords": GIVEN})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    password = TEST_SECRETS["TODO_POSTGRES_PASSWORD"]
    assert_least_privilege(tmp_path, f"postgresql://todo:{password}@postgres.todo.svc:5432/todo")
    _, _, secrets = rendered(tmp_path)
    assert secrets["todo-db-sync"]["stringData"]["password"] == GIVEN["sync"]


def test_each_deployment_reads_only_its_own_role_on_an_external_database(tmp_path: Path) -> None:
    # a password with characters a URL must escape
    given = {**GIVEN, "audit": "slash/at@colon:0123456789"}
    done = render_apps(
        "gke",
        tmp_path,
        extra_env={"TODO_DATABASE_URL": EXTERNAL_URL},
        extra_vars={"apps_database_service_passwords": given},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert_least_privilege(tmp_path, EXTERNAL_URL)


def test_a_new_role_password_rolls_only_that_service(tmp_path: Path) -> None:
    """The URL is read from a mounted file, which a changed Secret does not restart: the pod template
    carries a keyed hash of it, so site.yml rolls the service whose password changed, and no other."""

    def annotations(out: Path, passwords: dict[str, str]) -> dict[str, str]:
        done = render_apps("kind", out, extra_vars={"apps_database_service_passwords": passwords})
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        deployments, _, _ = rendered(out)
        return {
            name: d["spec"]["template"]["metadata"]["annotations"]["todo.platform/database-credentials"]
            for name, d in deployments.items()
        }

    before = annotations(tmp_path / "before", GIVEN)
    after = annotations(tmp_path / "after", {**GIVEN, "sync": "another-sync-password-0123456789"})
    assert {n for n in before if before[n] != after[n]} == {"sync"}, (before, after)
    assert annotations(tmp_path / "again", GIVEN) == before  # the same passwords: nothing rolls
    assert not any(p in v for v in before.values() for p in GIVEN.values())


def test_another_role_prefix_gets_a_migration_job_of_its_own(tmp_path: Path) -> None:
    """The prefix is in the Job's pod template, which Kubernetes refuses to change (422): another
    prefix must be another Job, which also creates the new roles."""
    names = {}
    for prefix in ("todo", "todostaging"):
        out = tmp_path / prefix
        done = render_apps(
            "kind",
            out,
            extra_vars={"apps_database_service_passwords": GIVEN, "apps_database_role_prefix": prefix},
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        _, job, _ = rendered(out)
        names[prefix] = job["metadata"]["name"]
    assert names["todo"] != names["todostaging"], names


def test_bad_role_settings_stop_the_preflight(tmp_path: Path) -> None:
    done = render_apps(
        "kind",
        tmp_path,
        extra_vars={
            "apps_database_role_prefix": "Todo-Prod",
            "apps_database_service_passwords": {"sync": "short"},
        },
    )
    assert done.returncode != 0
    assert "apps_database_role_prefix must be lower-case letters" in done.stdout, done.stdout[-3000:]
    assert "'short'" not in done.stdout + done.stderr


# -- applied on the kwok API server ------------------------------------------------------------------

NAMESPACE = "todo-db-roles"


def apply_phases(kube, tmp_path: Path, name: str, env: dict[str, str] | None = None, **extra: object):
    """The apps role's prepare and migrate phases (Secrets, then the migration Job) into NAMESPACE."""
    overrides = {
        "apps_namespace": NAMESPACE,
        "apps_wait": False,
        "cluster_kubeconfig": str(kube.kubeconfig),
        "cluster_context": kube.context,
        **extra,
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(overrides))
    argv = ["ansible-playbook", "playbooks/apps.yml", "-i", str(ROOT / "inventories/kind")]
    argv += ["--tags", "apps_prepare,apps_migrate", "-e", f"@{path}"]
    result = run(argv, {**tool_env(kube), **(env or {})})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result


def passwords(kube) -> dict[str, str]:
    found = {}
    for service in PACKAGES:
        got = kube.kubectl("get", "secret", f"todo-db-{service}", "-n", NAMESPACE, "-o", "json")
        secret = json.loads(got.stdout)
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert unquote(urlsplit(data["database-url"]).password or "") == data["password"]
        found[service] = data["password"]
    return found


def job_completed(kube, name: str) -> bool:
    got = kube.kubectl("get", "job", name, "-n", NAMESPACE, "-o", "jsonpath={.status.completionTime}")
    return bool(got.stdout.strip())


def migrate_jobs(kube) -> list[str]:
    out = kube.kubectl("get", "jobs", "-n", NAMESPACE, "-o", "jsonpath={.items[*].metadata.name}")
    return sorted(out.stdout.split())


@pytest.mark.testbed
@pytest.mark.timeout(1800)
def test_passwords_are_made_once_kept_and_rotated_by_one_rule(kube, tmp_path: Path) -> None:
    kube.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")
    try:
        first = apply_phases(kube, tmp_path, "first")
        made = passwords(kube)
        assert len(set(made.values())) == 5 and all(len(p) == 32 for p in made.values())
        [job] = migrate_jobs(kube)

        again = apply_phases(kube, tmp_path, "again")
        assert recap_changed(again.stdout) == 0, again.stdout[-4000:]
        assert passwords(kube) == made and migrate_jobs(kube) == [job]

        rotated = apply_phases(kube, tmp_path, "rotate", apps_database_rotate_service_passwords=True)
        new = passwords(kube)
        assert all(new[s] != made[s] for s in PACKAGES), "a password survived the rotation"
        # the new passwords reach PostgreSQL through a new run of the migration Job; once that has
        # completed (kwok completes Job pods, often within the same run), the one before is removed
        [newest] = [j for j in migrate_jobs(kube) if j != job] or [""]
        assert newest, "no new migration Job"
        eventually(lambda: job_completed(kube, newest), f"{newest} completed", within=300)
        cleaned = apply_phases(kube, tmp_path, "cleaned")
        assert migrate_jobs(kube) == [newest], cleaned.stdout[-4000:]

        # a new owner password (what rotate-secrets applies) rotates the service roles' too
        new_owner = {"TODO_POSTGRES_PASSWORD": "rotated-owner-password-0042"}
        owner = apply_phases(kube, tmp_path, "owner", env=new_owner)
        after_owner = passwords(kube)
        assert all(after_owner[s] != new[s] for s in PACKAGES)

        given = apply_phases(
            kube, tmp_path, "given", env=new_owner, apps_database_service_passwords={"sync": GIVEN["sync"]}
        )
        assert passwords(kube) == {**after_owner, "sync": GIVEN["sync"]}

        shown = "".join(r.stdout + r.stderr for r in (first, again, rotated, cleaned, owner, given))
        for value in [*made.values(), *new.values(), *after_owner.values(), GIVEN["sync"]]:
            assert value not in shown
    finally:
        kube.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")
