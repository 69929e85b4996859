"""The backup phase per inventory, as a server-side dry run on the test bed's API server (kwok):
the scripts' ConfigMap, the volume claim and the CronJob are admitted, with each inventory's
settings."""

from __future__ import annotations

import json

import pytest
from deploy_support import ENVIRONMENTS
from test_dry_run import _ensure_namespaces, dry_run

pytestmark = pytest.mark.testbed


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_the_backup_cronjob_is_admitted(kube, env_name, tmp_path):
    _ensure_namespaces(kube)
    result = dry_run(kube, env_name, tmp_path, playbook="playbooks/backup.yml")
    tail = f"{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    assert result.returncode == 0, f"{env_name}: dry run failed\n{tail}"
    assert "changed=1" in result.stdout, tail
    # a dry run: the server validated the objects and kept none
    found = kube.kubectl("-n", "todo", "get", "cronjob", "--ignore-not-found", "-o", "name")
    assert "todo-db-backup" not in found.stdout


def test_a_bad_schedule_is_refused_by_the_api_server(kube, tmp_path):
    _ensure_namespaces(kube)
    result = dry_run(
        kube, "kind", tmp_path, {"backup_schedule": "61 * * * *"}, playbook="playbooks/backup.yml"
    )
    assert result.returncode != 0
    assert "schedule" in result.stdout, result.stdout[-3000:]


def test_the_backup_phase_applies_once_and_then_changes_nothing(kube, tmp_path):
    """The rhythm site.yml and the molecule scenario's idempotence check rely on."""
    _ensure_namespaces(kube)
    try:
        first = dry_run(kube, "kind", tmp_path, playbook="playbooks/backup.yml", check=False)
        assert first.returncode == 0 and "changed=1" in first.stdout, first.stdout[-3000:]
        found = kube.kubectl("-n", "todo", "get", "cronjob,configmap,pvc", "-o", "name").stdout
        for name in ("cronjob.batch/todo-db-backup", "configmap/todo-db-backup-scripts",
                     "persistentvolumeclaim/todo-db-backups"):  # fmt: skip
            assert name in found, found
        again = dry_run(kube, "kind", tmp_path, playbook="playbooks/backup.yml", check=False)
        assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]
        checked = dry_run(kube, "kind", tmp_path, playbook="playbooks/backup.yml")
        assert checked.returncode == 0 and "changed=0" in checked.stdout, checked.stdout[-3000:]
    finally:
        kube.kubectl("-n", "todo", "delete", "cronjob/todo-db-backup", "configmap/todo-db-backup-scripts",
                     "pvc/todo-db-backups", "--ignore-not-found", "--wait=false")  # fmt: skip


def test_the_backup_and_restore_runbooks_run_their_jobs_and_restart_the_services(kube, tmp_path):
    """On kwok the Jobs' pods complete without running (the scripts themselves are tested against
    PostgreSQL in tests/integration/test_db_backup_restore.py): what is checked here is the
    runbooks' flow - a Job from the CronJob's template, services scaled to zero for the restore
    and back to their replicas afterwards."""
    _ensure_namespaces(kube)
    # the kind inventory's default class, as the molecule scenario's prepare.yml makes it: kwok's
    # volume stage provisions its claims
    storage_class = {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "standard",
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kwok.x-k8s.io/volume", "volumeBindingMode": "WaitForFirstConsumer",
    }  # fmt: skip
    labels = {"app.kubernetes.io/name": "audit", "app.kubernetes.io/part-of": "todo-platform"}
    image = "localhost/todo-services:backup-test"
    service = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "audit", "namespace": "todo", "labels": labels},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": "audit"}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "audit", "image": image}]}}},
    }  # fmt: skip
    # the completed migration Job of an earlier deploy: once the re-grant Job has completed, the
    # apps role's migrate tasks remove it, as after a deploy
    earlier = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "todo-migrate-earlier", "namespace": "todo",
                     "labels": {"app.kubernetes.io/name": "todo-migrate",
                                "app.kubernetes.io/part-of": "todo-platform"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "migrate", "image": image}]}}},
    }  # fmt: skip
    manifest = tmp_path / "audit.json"
    manifest.write_text(
        json.dumps({"apiVersion": "v1", "kind": "List", "items": [storage_class, service, earlier]})
    )
    try:
        kube.kubectl("apply", "-f", str(manifest))
        kube.kubectl("-n", "todo", "wait", "--for=condition=Complete", "job/todo-migrate-earlier",
                     "--timeout=100s")  # fmt: skip
        phase = dry_run(kube, "kind", tmp_path, playbook="playbooks/backup.yml", check=False)
        assert phase.returncode == 0, phase.stdout[-3000:]
        backup = dry_run(kube, "kind", tmp_path, {"backup_run_timeout": 120},
                         playbook="playbooks/runbooks/backup.yml", check=False)  # fmt: skip
        assert backup.returncode == 0, backup.stdout[-5000:]
        jobs = json.loads(kube.kubectl("-n", "todo", "get", "jobs", "-o", "json").stdout)["items"]
        assert any(j["metadata"]["name"].startswith("todo-db-backup-manual-") for j in jobs), jobs

        # restore.yml names its re-grant Job from the clock, so the name changed when a second passed
        # between applying the Job and waiting for it: the wait found no Job, waited out its 600 s
        # and passed (CI's cold runs). Here the name changes at every use, and the wait is short.
        regrant_name = {
            "_apps_migrate_job": "todo-migrate-restore-{{ 99999999 | random }}",
            "apps_wait_timeout": 60,
        }
        restore = dry_run(kube, "kind", tmp_path,
                          {"backup_file": "latest", "backup_wait_timeout": 120, **regrant_name},
                          playbook="playbooks/runbooks/restore.yml", check=False)  # fmt: skip
        assert restore.returncode == 0, restore.stdout[-5000:]
        assert "Scale every service to zero" in restore.stdout
        jobs = json.loads(kube.kubectl("-n", "todo", "get", "jobs", "-o", "json").stdout)["items"]
        (job,) = [j for j in jobs if j["metadata"]["name"].startswith("todo-db-restore-")]
        env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["BACKUP_FILE"] == "latest"
        # the restored schemas grant nothing: todo-migrate grants the service roles again, as the
        # image the services run
        (regrant,) = [j for j in jobs if j["metadata"]["name"].startswith("todo-migrate-restore-")]
        assert not [j for j in jobs if j["metadata"]["name"] == "todo-migrate-earlier"], "not removed"
        container = regrant["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == image
        assert {e["name"] for e in container["env"]} >= {"DB_SERVICE_ROLE_PREFIX"}, container["env"]
        replicas = kube.kubectl("-n", "todo", "get", "deploy", "audit", "-o", "jsonpath={.spec.replicas}")
        assert replicas.stdout == "2"

        refused = dry_run(kube, "kind", tmp_path, {"backup_file": "../x"},
                          playbook="playbooks/runbooks/restore.yml", check=False)  # fmt: skip
        assert refused.returncode != 0 and "pass -e backup_file=latest" in refused.stdout
    finally:
        kube.kubectl("-n", "todo", "delete", "deploy/audit", "cronjob/todo-db-backup",
                     "configmap/todo-db-backup-scripts", "pvc/todo-db-backups", "--ignore-not-found",
                     "--wait=false")  # fmt: skip
        kube.kubectl("-n", "todo", "delete", "jobs", "-l", "app.kubernetes.io/part-of=todo-platform",
                     "--ignore-not-found", "--wait=false")  # fmt: skip
        kube.kubectl("delete", "storageclass", "standard", "--ignore-not-found", "--wait=false")
