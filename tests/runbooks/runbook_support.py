"""Run a day-2 runbook (playbooks/runbooks/<name>.yml) with the repository's configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "playbooks" / "runbooks"


def write_inventory(path: Path, group_vars: dict) -> Path:
    """An inventory of one local host in group todo_platform with these group variables."""
    (path / "group_vars/todo_platform").mkdir(parents=True, exist_ok=True)
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    hosts = {"todo_platform": {"hosts": {"todo-test": host}}}
    (path / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (path / "group_vars/todo_platform/main.yml").write_text(yaml.safe_dump(group_vars))
    return path


def run_runbook(
    name: str, inventory: Path | str, *extra: str, env: dict[str, str] | None = None, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    base = dict(os.environ if env is None else env)
    base.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
    )
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            str(RUNBOOKS / f"{name}.yml"),
            "-i",
            str(inventory),
            *extra,
        ],
        cwd=ROOT,
        env=base,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout[-6000:] + result.stderr[-3000:]
