"""Mistakes in playbooks and role tasks that run without an error but do the wrong thing."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TASK_FILES = sorted(
    p
    for pattern in ("roles/*/tasks/**/*.yml", "playbooks/**/*.yml", "molecule/*/*.yml", "site.yml")
    for p in ROOT.glob(pattern)
)
# Options of kubernetes.core's k8s modules that mean nothing as task variables: written under
# `vars:` by mistake, the module silently runs without them (no wait, default state, ...).
K8S_OPTIONS = {
    "wait",
    "wait_condition",
    "wait_timeout",
    "wait_sleep",
    "state",
    "definition",
    "namespace",
    "name",
    "kind",
    "api_version",
    "apply",
    "force",
    "label_selectors",
    "delete_all",
    "template",
}


def _tasks(node):
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        yield node
        for key in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always"):
            if key in node:
                yield from _tasks(node[key])


def test_k8s_module_options_are_not_task_vars() -> None:
    misplaced = []
    for path in TASK_FILES:
        for task in _tasks(yaml.safe_load(path.read_text())):
            module = next((k for k in task if k.startswith("kubernetes.core.k8s")), None)
            if module and isinstance(task.get("vars"), dict):
                wrong = sorted(K8S_OPTIONS & set(task["vars"]))
                if wrong:
                    misplaced.append(f"{path.relative_to(ROOT)}: {task.get('name')!r} has {wrong} under vars")
    assert not misplaced, "module options the module never sees:\n" + "\n".join(misplaced)


def test_strimzi_api_version_is_the_kafka_roles() -> None:
    """Runbooks address Strimzi's resources at the version the kafka role creates them with."""
    pattern = re.compile(r"kafka\.strimzi\.io/(v\w+)")
    role = {m for p in (ROOT / "roles/kafka/templates").glob("*") for m in pattern.findall(p.read_text())}
    assert len(role) == 1, role
    used = {
        f"{p.relative_to(ROOT)}: {v}"
        for p in TASK_FILES
        for v in pattern.findall(p.read_text())
        if v not in role
    }
    assert not used, f"the kafka role uses {role}; these use another version: {sorted(used)}"
