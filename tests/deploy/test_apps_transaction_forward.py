"""The apps role's post-deploy check reaches the Services with kubectl port-forward from the control
host. Against the test bed's API server (kwok: no container runs, so no forward can carry traffic),
a forward that cannot start fails the deploy with kubectl's own words, and leaves no kubectl process
and no log directory behind. The passing path through real pods is in the kind scenario
(molecule/kind-local); the check itself on a live platform is tests/fault/test_deploy_transaction_check.py."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest
from deploy_support import run, tool_env

pytestmark = pytest.mark.testbed


def kubectl_processes_naming(marker: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(marker.encode() in a for a in argv) and any(a.endswith(b"kubectl") for a in argv[:1]):
            found.append(cmdline.parent.name)
    return found


def test_port_forward_that_cannot_start_fails_with_kubectls_message(kube, tmp_path):
    namespace = f"no-services-{uuid.uuid4().hex[:8]}"
    playbook = tmp_path / "transaction.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role: {name: apps, tasks_from: transaction}\n"
    )
    settings = {
        "apps_namespace": namespace,
        "apps_verify_transaction_kubeconfig": str(kube.kubeconfig),
        "apps_verify_transaction_context": kube.context,
        # kubectl gives up at once; no need to wait the default minute for a port.
        "_apps_verify_forward_timeout": 10,
    }
    (tmp_path / "vars.json").write_text(json.dumps(settings))
    env = tool_env(kube)
    scratch = tmp_path / "tmp"  # where the role's log directory goes (the tempfile module reads TMPDIR)
    scratch.mkdir()
    env["TMPDIR"] = str(scratch)
    r = run(
        [
            "ansible-playbook",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"@{tmp_path / 'vars.json'}",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(playbook),
        ],
        env,
        timeout=600,
    )
    out = r.stdout
    assert r.returncode != 0, out[-3000:]
    assert "gave no local port within 10 s" in out, out[-3000:]
    said = f'kubectl said: Error from server (NotFound): namespaces "{namespace}" not found'
    assert said in out, out[-3000:]
    assert "changed=0" in out
    # The module never ran, and the always section cleaned up.
    assert "Register, create a task" not in out.split("Fail with what kubectl port-forward said")[-1]
    assert not kubectl_processes_naming(namespace)
    assert "Remove the port-forwards' logs" in out
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("todo-port-forward.")]
