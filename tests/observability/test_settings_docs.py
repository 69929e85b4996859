"""What a user is told to set is what the code reads: the monitoring and logging preflights'
messages reach the user and name the environment variables the inventories read, and
docs/observability.md names only variables and files that exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from common import ROOT
from deploy.deploy_support import TEST_SECRETS

INVENTORIES = ROOT / "inventories"
DOC = ROOT / "docs" / "observability.md"
ENV_LOOKUP = re.compile(r"lookup\('ansible\.builtin\.env', '([A-Z0-9_]+)'\)")


def inventory_env_names() -> set[str]:
    return {name for path in INVENTORIES.rglob("*.yml") for name in ENV_LOOKUP.findall(path.read_text())}


def preflight(playbook: str, inventory: str, tags: str, unset: list[str]) -> str:
    """Run a role's preflight against an inventory (its asserts run before any cluster access)."""
    env = dict(os.environ, **TEST_SECRETS, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    for name in unset:
        env.pop(name, None)
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), playbook, "-i", f"inventories/{inventory}",
         "--tags", tags],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode != 0, proc.stdout[-3000:]
    return proc.stdout


def test_missing_grafana_password_names_the_variable_the_inventory_reads() -> None:
    out = preflight(
        "playbooks/monitoring.yml", "aks", "monitoring_preflight", ["TODO_GRAFANA_ADMIN_PASSWORD"]
    )
    assert "censored" not in out, out[-2000:]
    text = (INVENTORIES / "aks" / "group_vars" / "todo_platform" / "monitoring.yml").read_text()
    (expr,) = [v for k, v in yaml.safe_load(text).items() if k == "monitoring_grafana_admin_password"]
    names = ENV_LOOKUP.findall(expr)
    assert names == ["TODO_GRAFANA_ADMIN_PASSWORD"]
    assert all(name in out for name in names), out[-2000:]
    assert TEST_SECRETS["TODO_GRAFANA_ADMIN_PASSWORD"] not in out


def test_runbook_base_url_is_required_with_what_to_set() -> None:
    out = preflight("playbooks/monitoring.yml", "gke", "monitoring_preflight", ["TODO_RUNBOOK_BASE_URL"])
    assert "monitoring_runbook_base_url" in out and "TODO_RUNBOOK_BASE_URL" in out, out[-2000:]
    assert "TODO_RUNBOOK_BASE_URL" in inventory_env_names()


def test_missing_object_storage_key_is_reported_by_its_name() -> None:
    out = preflight("playbooks/logging.yml", "oke", "logging_preflight", ["TODO_OCI_S3_ACCESS_KEY_ID"])
    assert "censored" not in out, out[-2000:]
    assert "TODO_OCI_S3_ACCESS_KEY_ID" in out, out[-2000:]
    assert TEST_SECRETS["TODO_OCI_S3_SECRET_ACCESS_KEY"] not in out


@pytest.mark.parametrize(
    "path",
    ["roles/monitoring/tasks/preflight.yml", "roles/logging/tasks/preflight.yml", "docs/observability.md"],
)
def test_every_environment_variable_named_is_one_an_inventory_reads(path: str) -> None:
    named = set(re.findall(r"\bTODO_[A-Z0-9_]+\b", (ROOT / path).read_text()))
    assert named, path
    assert named - inventory_env_names() == set()


def test_the_local_password_file_named_is_the_one_the_inventory_writes() -> None:
    doc = DOC.read_text()
    for env in ("kind", "minikube"):
        group_vars = INVENTORIES / env / "group_vars" / "todo_platform"
        secrets_dir = yaml.safe_load((group_vars / "apps.yml").read_text())["local_secrets_dir"]
        password = yaml.safe_load((group_vars / "monitoring.yml").read_text())[
            "monitoring_grafana_admin_password"
        ]
        (file_name,) = re.findall(r"local_secrets_dir ~ '/([\w.-]+) ", password)
        home = "{{ lookup('ansible.builtin.env', 'HOME') }}"
        assert secrets_dir.startswith(home)
        path = "~" + secrets_dir.removeprefix(home) + "/" + file_name
        assert path.replace(f"/{env}/", "/<env>/") in doc, path
