"""Spike (issue 15): how far a kind-node-like container gets on this machine's Docker.

Not part of ``scripts/test``: the node base costs one more debootstrap on a cold machine (about
3.5 minutes here) and containerd one more Go build.  Run by hand::

    pytest -q tests/containers

What it shows: a Debian root file system with systemd as PID 1 boots in a privileged container of the
test bed's Docker (whose default runtime drops the capabilities this VM withholds), and containerd 2
built from the Go module proxy runs inside it and starts a container of its own with Debian's runc.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest
from testbed.gobuild import CONTAINERD_VERSION, ensure_built
from testbed.images import ensure_base_image

pytestmark = pytest.mark.testbed

CONTAINERD_UNIT = """\
[Unit]
Description=containerd (built by the test bed from the Go module proxy)
After=network.target local-fs.target

[Service]
ExecStart=/usr/local/bin/containerd
Delegate=yes
KillMode=process
Restart=always

[Install]
WantedBy=multi-user.target
"""


def _docker(
    host: str, *args: str, input: bytes | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    docker = shutil.which("docker")
    assert docker, "docker CLI missing: apt-get install -y docker.io"
    return subprocess.run(
        [docker, *args],
        env=os.environ | {"DOCKER_HOST": host},
        input=input,
        capture_output=True,
        timeout=timeout,
    )


def _ok(done: subprocess.CompletedProcess) -> str:
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, f"{done.args[1:]}: {out}{done.stderr.decode(errors='replace')}"
    return out


@pytest.fixture(scope="module")
def node(docker_engine):
    """A privileged container booting systemd, like a kind node (tmpfs /run and /tmp, /var/lib/containerd
    on a volume so containerd's overlay snapshots are not nested in Docker's overlay)."""
    host = docker_engine.host
    image = ensure_base_image(host, "node")
    containerd_bin = ensure_built("containerd")
    name = f"tb-node-{uuid.uuid4().hex[:8]}"
    _ok(
        _docker(
            host, "run", "-d", "--name", name, "--hostname", name, "--privileged", "--network", "none",
            "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
            "-v", "/var/lib/containerd", "-v", f"{containerd_bin}:/usr/local/bin:ro",
            "--stop-signal", "SIGRTMIN+3", image,
        )
    )  # fmt: skip
    try:
        yield name
    finally:
        _docker(host, "rm", "-f", "-v", name)


def _system_state(host: str, node: str, timeout: float = 180) -> tuple[str, float]:
    """``systemctl is-system-running`` once systemd has finished booting (or the timeout passed)."""
    started = time.monotonic()
    state = ""
    while time.monotonic() - started < timeout:
        done = _docker(host, "exec", node, "systemctl", "is-system-running")
        state = (done.stdout.decode().strip() or done.stderr.decode().strip())[-300:]
        if state in ("running", "degraded", "maintenance", "stopping"):
            break
        time.sleep(1)  # before systemd listens, systemctl answers "offline" or cannot connect
    return state, time.monotonic() - started


def test_systemd_boots_as_pid_1(docker_engine, node):
    state, seconds = _system_state(docker_engine.host, node)
    failed = _docker(docker_engine.host, "exec", node, "systemctl", "--failed", "--no-legend", "--plain")
    assert state == "running", f"system {state!r} after {seconds:.0f}s; failed units: {failed.stdout!r}"
    assert _ok(_docker(docker_engine.host, "exec", node, "cat", "/proc/1/comm")).strip() == "systemd"


def test_containerd_2_runs_a_container_inside_the_node(docker_engine, node):
    host = docker_engine.host
    assert _system_state(host, node)[0] == "running"
    _ok(
        _docker(
            host, "exec", "-i", node, "sh", "-c", "cat > /etc/systemd/system/containerd.service",
            input=CONTAINERD_UNIT.encode(),
        )
    )  # fmt: skip
    _ok(_docker(host, "exec", node, "systemctl", "daemon-reload"))
    _ok(_docker(host, "exec", node, "systemctl", "enable", "--now", "containerd"))
    deadline = time.monotonic() + 60
    while True:
        version = _docker(host, "exec", node, "ctr", "version")
        if version.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    server = _ok(version).split("Server:", 1)[-1]
    assert CONTAINERD_VERSION in server, server

    image = ensure_base_image(host, "python3")
    saved = subprocess.run(
        [shutil.which("docker") or "docker", "save", image],
        env=os.environ | {"DOCKER_HOST": host},
        capture_output=True,
        check=True,
        timeout=300,
    ).stdout
    _ok(_docker(host, "exec", "-i", node, "ctr", "-n", "testbed", "images", "import", "-", input=saved))
    ref = f"docker.io/{image}"  # how ctr names a Docker Hub style reference
    run = _docker(
        host, "exec", node, "ctr", "-n", "testbed", "run", "--rm", ref, f"t-{uuid.uuid4().hex[:6]}",
        "python3", "-c", "import os; print('inside', os.getpid())",
    )  # fmt: skip
    assert _ok(run).split() == ["inside", "1"]
