"""The README's deploy command, run as a user runs it, up to the cluster step.

``scripts/deploy ENV --preflight`` bootstraps the virtualenv, builds the pinned kind and helm into the
tool cache (``scripts/tools``) and runs the cluster role's real preflight with them on PATH, then
stops before anything is created: kind cannot pull its node image here, so the deployment itself
cannot go further on this machine. The preflight must accept the tools the tool cache built
(a kind the preflight refuses is exactly how the deploy command used to stop on a fresh machine).

When this machine has no Docker daemon, the preflight's Docker check fails; that one failure is
expected and asserted to be Docker's, every other check must pass. Once the tools are cached a run
takes a few seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS_TASK = "TASK [cluster : Assert each required tool is installed at a supported version]"

pytestmark = [pytest.mark.testbed, pytest.mark.timeout(2400)]


def _docker_daemon_reachable() -> bool:
    docker = shutil.which("docker")
    return bool(docker) and subprocess.run([docker, "info"], capture_output=True, check=False).returncode == 0


def _user_env(tmp_path: Path) -> dict[str, str]:
    """The caller's environment minus anything that would hand the script its tools: no virtualenv
    and no tool cache on PATH, no Ansible settings, so the script has to set them up itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k != "VIRTUAL_ENV"}
    cache = os.environ.get("TODO_PLATFORM_CACHE", str(Path.home() / ".cache/todo-platform"))
    ours = (str(ROOT / ".venv"), cache)
    dirs = [p for p in env.get("PATH", "").split(os.pathsep) if p and not p.startswith(ours)]
    env["PATH"] = os.pathsep.join(dirs)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    env["TODO_KUBECONFIG"] = str(kubeconfig)  # a cloud preflight checks that the kubeconfig exists
    return env


@pytest.mark.parametrize(
    ("inventory", "host", "pinned"), [("kind", "todo-kind", {"kind", "helm"}), ("oke", "todo-oke", {"helm"})]
)
def test_deploy_preflight_accepts_the_tools_it_builds(tmp_path, inventory, host, pinned):
    proc = subprocess.run(
        [str(ROOT / "scripts/deploy"), inventory, "--preflight"],
        cwd=tmp_path,  # the script finds the repository itself, as from any directory
        env=_user_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=2300,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert TOOLS_TASK in output, (
        f"scripts/deploy stopped before the tool preflight (exit {proc.returncode}):\n{output[-4000:]}"
    )
    section = output.split(TOOLS_TASK, 1)[1].split("\nTASK [", 1)[0].split("\nPLAY RECAP", 1)[0]
    passed = set(re.findall(rf"^ok: \[{host}\] => \(item=(\S+)\)$", section, re.M))
    failed = set(re.findall(rf"^failed: \[{host}\] \(item=(\S+)\)", section, re.M))
    complaints = "\n".join(re.findall(r"cluster preflight: .*", output))
    assert pinned <= passed, f"the preflight refused tools the tool cache built:\n{complaints}"
    if _docker_daemon_reachable():
        assert proc.returncode == 0, output[-4000:]
        assert not failed
    else:
        assert failed == {"docker"}, f"only Docker (no daemon here) may fail:\n{complaints}"
        assert "cluster preflight: docker: `docker version` failed" in output
    # Nothing after the preflight ran: no cluster was created or checked.
    assert "Create the kind cluster" not in output and "Read the API server version" not in output
