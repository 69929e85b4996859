"""The molecule `kwok` scenario against the test bed's Kubernetes API: converge -> idempotence
(changed=0) -> converge again under --check --diff (changed=0) -> verify -> cleanup."""

from __future__ import annotations

import pytest
from deploy_support import recap_changed, run, tool_env

# slow: run by scripts/test stage `molecule` (run_molecule_kwok.sh), not by the integration stage.
pytestmark = [pytest.mark.testbed, pytest.mark.slow, pytest.mark.timeout(3600)]


def molecule(env, *args: str):
    result = run(["molecule", *args], env, timeout=3000)
    print(result.stdout[-20000:])
    print(result.stderr[-5000:])
    return result


def test_kwok_scenario(kube):
    from testbed import gobuild

    env = tool_env(kube)
    # Every release is installed for real (kubernetes.core.helm runs the pinned helm from PATH).
    env["PATH"] = f"{gobuild.TOOLS['helm'].binary().parent}:{env['PATH']}"
    steps = [("cleanup",), ("converge",), ("idempotence",)]
    try:
        for step in steps:
            result = molecule(env, step[0], "-s", "kwok")
            assert result.returncode == 0, f"molecule {step[0]} failed"
        check = molecule(env, "converge", "-s", "kwok", "--", "--check", "--diff")
        assert check.returncode == 0, "converge under --check --diff failed"
        assert recap_changed(check.stdout) == 0, "--check --diff after converge reports changes"
        result = molecule(env, "verify", "-s", "kwok")
        assert result.returncode == 0, "molecule verify failed"
    finally:
        molecule(env, "cleanup", "-s", "kwok")
