"""The post-deploy check (todo.platform.todo_transaction_check, run by the apps role at the end of
every deploy) against the test bed's running platform: it passes on a healthy pipeline and fails,
naming the hop, when the pipeline is broken the ways a deploy can break it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

# The ad-hoc runner of the collection's module tests (ansible localhost -m ..., JSON callback).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "kafka_wiring"))
from kw_ansible import run_module  # noqa: E402

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

#: Short enough to keep the failing runs brief; a healthy pipeline needs well under a second.
BROKEN_TIMEOUT = 8


def check(platform, *, check_mode: bool = False, **overrides):
    args = {
        "backend_url": platform.urls["backend"],
        "audit_url": platform.urls["audit"],
        "audit_timeout": 60,
        "use_proxy": False,
        **overrides,
    }
    return run_module("todo_transaction_check", args, check=check_mode)


def account_count(platform) -> int:
    with psycopg.connect(platform.dsn) as conn:
        return conn.execute("SELECT count(*) FROM backend.users").fetchone()[0]


def task_exists(platform, task_id: str) -> bool:
    with psycopg.connect(platform.dsn) as conn:
        return conn.execute("SELECT 1 FROM backend.tasks WHERE id = %s", (task_id,)).fetchone() is not None


def test_healthy_platform_passes_and_cleans_up_its_task(todo_platform):
    r = check(todo_platform)
    assert not r.failed, r.result.get("msg")
    assert r.result["failed_hop"] == ""
    assert r.result["audit_seconds"] >= 0
    assert r.result["email"].startswith("deploy-check-")
    assert r.result["task_deleted"] is True
    assert not task_exists(todo_platform, r.result["task_id"])
    assert not r.changed


def test_check_mode_writes_nothing(todo_platform):
    before = account_count(todo_platform)
    r = check(todo_platform, check_mode=True)
    assert not r.failed, r.result.get("msg")
    assert r.result["ready"] == {"backend": True, "audit": True}
    assert account_count(todo_platform) == before


def test_audit_sidecar_down_fails_at_the_audit_hop(todo_platform):
    """The audit consumer is gone (its daprd stopped): the task is accepted but never audited."""
    sidecar = todo_platform.daprd["audit"]
    sidecar.stop()
    try:
        r = check(todo_platform, audit_timeout=BROKEN_TIMEOUT)
    finally:
        sidecar.start()
    assert r.failed
    assert r.result["failed_hop"] == "audit"
    assert f"did not reach the audit log within {BROKEN_TIMEOUT} s" in r.result["msg"], r.result["msg"]
    assert task_exists(todo_platform, r.result["task_id"])  # the backend did its part


def test_wrong_app_token_fails_at_the_audit_hop(todo_platform):
    """The audit app expects another APP_API_TOKEN than its sidecar sends: every delivery is 401."""
    todo_platform.extra_env["audit"] = {"APP_API_TOKEN": "not-the-sidecars-app-token-0123"}
    try:
        todo_platform.restart_app("audit")
        r = check(todo_platform, audit_timeout=BROKEN_TIMEOUT)
    finally:
        todo_platform.extra_env.pop("audit")
        todo_platform.restart_app("audit")
    assert r.failed
    assert r.result["failed_hop"] == "audit"
    assert "APP_API_TOKEN" in r.result["msg"]


def test_pipeline_recovers_after_the_faults(todo_platform):
    r = check(todo_platform)
    assert not r.failed, r.result.get("msg")


def test_unreachable_backend_fails_at_register(todo_platform):
    r = check(todo_platform, backend_url="http://127.0.0.1:1")
    assert r.failed
    assert r.result["failed_hop"] == "register"
    assert "unreachable" in r.result["msg"]
    # Something answers there, but not the backend's API (a wrong Service or route).
    r = check(todo_platform, backend_url=todo_platform.urls["audit"])
    assert r.failed
    assert r.result["failed_hop"] == "register"
    assert "answered HTTP 404" in r.result["msg"], r.result["msg"]


def test_wrong_password_of_a_given_account_fails_at_login(todo_platform):
    r = check(todo_platform, email="deploy-check-fixed@example.invalid", password="the-right-password-1")
    assert not r.failed, r.result.get("msg")
    # Second run: the account exists (409), so the module logs in.
    r = check(todo_platform, email="deploy-check-fixed@example.invalid", password="the-right-password-1")
    assert not r.failed, r.result.get("msg")
    r = check(todo_platform, email="deploy-check-fixed@example.invalid", password="a-wrong-password-2")
    assert r.failed
    assert r.result["failed_hop"] == "login"
    assert "answered HTTP 401" in r.result["msg"]
    assert "a-wrong-password-2" not in r.text


def test_bad_settings_fail_with_what_to_fix(todo_platform):
    r = check(todo_platform, backend_url="127.0.0.1:8000")
    assert r.failed
    assert "backend_url must be an http:// or https:// base URL" in r.result["msg"]
    r = check(todo_platform, email="someone@example.invalid")
    assert r.failed
    assert "give its password" in r.result["msg"]


def run_apps_transaction(tmp_path, extra_vars: dict) -> subprocess.CompletedProcess[str]:
    """The apps role's post-deploy check (tasks/transaction.yml) as site.yml runs it."""
    playbook = tmp_path / "transaction.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role: {name: apps, tasks_from: transaction}\n"
    )
    (tmp_path / "vars.json").write_text(json.dumps(extra_vars))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
    }
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-e",
            f"@{tmp_path / 'vars.json'}",
            str(playbook),
        ],
        cwd=REPO,
        env=env,
        text=True,
        capture_output=True,
        timeout=600,
        check=False,
    )


def test_apps_role_runs_the_check_through_given_urls(todo_platform, tmp_path):
    urls = {
        "apps_verify_transaction_backend_url": todo_platform.urls["backend"],
        "apps_verify_transaction_audit_url": todo_platform.urls["audit"],
    }
    r = run_apps_transaction(tmp_path, urls)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "Register, create a task and wait for its event in the audit log" in r.stdout
    assert "changed=0" in r.stdout

    sidecar = todo_platform.daprd["audit"]
    sidecar.stop()
    try:
        r = run_apps_transaction(tmp_path, {**urls, "apps_verify_transaction_timeout": BROKEN_TIMEOUT})
    finally:
        sidecar.start()
    assert r.returncode != 0
    assert f"did not reach the audit log within {BROKEN_TIMEOUT} s" in r.stdout, r.stdout[-3000:]
