"""Helpers for the deployment tests: run ansible-playbook / molecule against the test bed's
Kubernetes API (kube-apiserver with kwok nodes) with the repository's own configuration."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ["kind", "minikube", "oke", "aks", "gke"]
# Test-only inventories (tests/deploy/inventories): an EKS-shaped one proves a new cloud needs no
# role change; deployed on the test bed like the shipped ones.
TEST_INVENTORIES = ["eks"]


def inventory_dir(name: str) -> Path:
    """A shipped inventory (inventories/<name>) or a test-only one (tests/deploy/inventories/<name>)."""
    shipped = ROOT / "inventories" / name
    return shipped if shipped.is_dir() else Path(__file__).parent / "inventories" / name


NAMESPACES = ["todo", "kafka", "dapr-system", "monitoring", "logging", "todo-gateway"]

# Test-only values for the secrets the inventories read from the environment.
TEST_SECRETS = {
    "TODO_JWT_SECRET": "test-jwt-secret-0123456789abcdef0123456789",
    "TODO_DAPR_API_TOKEN": "test-dapr-api-token-0123456789",
    "TODO_APP_API_TOKEN": "test-app-api-token-0123456789",
    "TODO_POSTGRES_PASSWORD": "test-postgres-password-0123",
    "TODO_DATABASE_URL": "postgresql://todo:test-password@10.0.0.5:5432/todo",
    "TODO_KAFKA_PASSWORD": "test-kafka-password-0123456789",
    "TODO_OCI_AUTH_TOKEN": "test-oci-auth-token",
    "TODO_GRAFANA_ADMIN_PASSWORD": "test-grafana-admin-password",
    # Image pull secret of the cloud inventories (required on OKE: OCIR repositories are private).
    "TODO_REGISTRY_PULL_USERNAME": "testnamespace/test-puller",
    "TODO_REGISTRY_PULL_PASSWORD": "test-registry-pull-token",
    # Where the cloud inventories' alerts link to (monitoring_runbook_base_url is required).
    "TODO_RUNBOOK_BASE_URL": "https://docs.example.test/todo-platform/",
    # Loki's object storage per cloud (inventories/<cloud>/group_vars/todo_platform/logging.yml).
    "TODO_OCI_OBJECT_STORAGE_NAMESPACE": "testnamespace",
    "TODO_OCI_S3_ACCESS_KEY_ID": "test-oci-s3-access-key-id",
    "TODO_OCI_S3_SECRET_ACCESS_KEY": "test-oci-s3-secret-access-key",
    "TODO_AZURE_STORAGE_ACCOUNT": "todologs",
    "TODO_AZURE_STORAGE_KEY": "dGVzdC1henVyZS1zdG9yYWdlLWtleQ==",
    "TODO_GCS_SERVICE_ACCOUNT": "loki@todo-project.iam.gserviceaccount.com",
    # The test-only EKS inventory's S3 store (tests/deploy/inventories/eks).
    "TODO_AWS_S3_ACCESS_KEY_ID": "test-aws-s3-access-key-id",
    "TODO_AWS_S3_SECRET_ACCESS_KEY": "test-aws-s3-secret-access-key",
    "TODO_EVENTHUBS_CONNECTION_STRING": (
        "Endpoint=sb://todo-events.servicebus.windows.net/;SharedAccessKeyName=todo;SharedAccessKey=dGVzdA=="
    ),
}


def crds_dir() -> Path:
    """The upstream CRDs of the test data (testbed.kube.upstream_data_dir: TODO_PLATFORM_TEST_DATA, else
    ../shared beside the repository or beside the one it was cloned from)."""
    from testbed.kube import crds_dir as testbed_crds_dir

    return testbed_crds_dir().resolve()


def charts_dir() -> Path:
    """The upstream chart archives of the test data (same lookup as crds_dir)."""
    from testbed.kube import charts_dir as testbed_charts_dir

    return testbed_charts_dir().resolve()


def upstream_data_env() -> dict[str, str]:
    """The test data's directories as the playbooks read them (molecule/kwok host_vars, dry runs):
    TODO_PLATFORM_TEST_DATA for the chart archives, TODO_PLATFORM_CRDS_DIR for the CRDs."""
    from testbed.core import MissingTool
    from testbed.kube import upstream_data_dir

    env = {"TODO_PLATFORM_CRDS_DIR": str(crds_dir())}
    # With only TODO_PLATFORM_CRDS_DIR given, a chart reference into the test data names a missing
    # archive, and the role's preflight says so.
    with contextlib.suppress(MissingTool):
        env["TODO_PLATFORM_TEST_DATA"] = str(upstream_data_dir())
    return env


def tool_env(kube) -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env.update(TEST_SECRETS)
    env.update(
        PATH=f"{venv_bin}:{env.get('PATH', '')}",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        TODO_KUBECONFIG=str(kube.kubeconfig),
        TODO_KUBE_CONTEXT=kube.context,
        # Cloud identities pinned by the operator do not apply to the test bed's cluster.
        TODO_KUBE_SYSTEM_UID="",
        TODO_KUBE_API_SERVER="",
    )
    env.update(upstream_data_env())
    return env


def run(args: list[str], env: dict[str, str], timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env=env, text=True, capture_output=True, timeout=timeout, check=False
    )


def recap_changed(output: str) -> int:
    """Sum of changed= over the PLAY RECAP lines of an ansible-playbook run."""
    total = 0
    in_recap = False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if in_recap and "changed=" in line:
            total += int(line.split("changed=")[1].split()[0])
    return total


def render_apps(
    inventory: str, out: Path, extra_env: dict[str, str] | None = None, extra_vars: dict | None = None
) -> subprocess.CompletedProcess[str]:
    """tests/deploy/render_apps.yml with ``inventories/<inventory>``: the apps role's preflight, then
    its objects rendered into ``out``; ``extra_vars`` as ``-e`` JSON, ``extra_env`` on top of the
    test secrets."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **TEST_SECRETS,
        **(extra_env or {}),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_NOCOLOR": "1",
    }
    playbook = ROOT / "tests" / "deploy" / "render_apps.yml"
    args = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        str(playbook),
        "-i",
        f"inventories/{inventory}",
        "-e",
        f"out={out}",
    ]
    if extra_vars:
        args += ["-e", json.dumps(extra_vars)]
    return subprocess.run(args, cwd=ROOT, env=env, text=True, capture_output=True, timeout=600, check=False)
