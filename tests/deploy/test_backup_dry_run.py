"""The backup phase per inventory, as a server-side dry run on the test bed's API server (kwok):
the scripts' ConfigMap, the volume claim and the CronJob are admitted, with each inventory's
settings."""

from __future__ import annotations

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
