"""Spike (issue 15): how far a kind-node-like container gets on this machine's Docker.

Not part of ``scripts/test``: the node base costs one more debootstrap on a cold machine (about
3.5 minutes here) and containerd one more Go build.  Run by hand::

    pytest -q tests/containers

What it shows: a Debian root file system with systemd as PID 1 boots in a privileged container of the
test bed's Docker (whose default runtime drops the capabilities this VM withholds); containerd 2
built from the Go module proxy runs inside it and starts a container of its own with Debian's runc;
and a standalone kubelet (built from the same Kubernetes version as the test bed's control plane)
runs a static pod of the services image through containerd's CRI and Debian's CNI plugins: UID 10001,
no capabilities, the RuntimeDefault seccomp profile, answering HTTP on its pod IP.  The node has no
network of its own (``--network none``); pods talk only on the node's internal bridge.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import uuid

import pytest
from testbed.gobuild import CONTAINERD_VERSION, ensure_built
from testbed.images import ensure_base_image, ensure_services_image

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

#: The sandbox ("pause") container of every pod: a python3 program that waits for SIGTERM, built here
#: on the python3 base (no registry; it is named for what it is, not as the upstream pause image).
SANDBOX_IMAGE = "testbed/sandbox:python3"
SANDBOX_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ENTRYPOINT ["python3", "-c", \\
  "import signal, sys; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); signal.pause()"]
"""

CONTAINERD_CONFIG = f"""\
version = 3

[plugins.'io.containerd.cri.v1.runtime']
  # kubelet gives pod sandboxes oom_score_adj -998; lowering a score needs CAP_SYS_RESOURCE, which
  # this VM withholds, and runc then fails with "can't get final child's PID from pipe: EOF"
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = '/etc/cni/net.d'
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      SystemdCgroup = false

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = 'docker.io/{SANDBOX_IMAGE}'
"""

POD_SUBNET = "10.88.0.0/24"
FIRST_POD_IP = "10.88.0.2"  # host-local hands out the first address after the gateway
CNI_CONFIG = json.dumps(
    {
        "cniVersion": "1.0.0",
        "name": "testbed-pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]]},
            },  # fmt: skip
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
)

KUBELET_CONFIG = """\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# this VM mounts cgroup v1; kubelet >= 1.35 refuses it unless told otherwise
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
staticPodPath: /etc/kubernetes/manifests
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
failSwapOn: false
"""

KUBELET_UNIT = """\
[Unit]
Description=kubelet (standalone: static pods only, no API server)
After=containerd.service

[Service]
ExecStart=/opt/kubelet/kubelet --config /etc/kubernetes/kubelet.yaml --hostname-override node
Restart=always

[Install]
WantedBy=multi-user.target
"""

STATIC_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: backend
  namespace: default
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    seccompProfile: {{type: RuntimeDefault}}
  containers:
    - name: backend
      image: docker.io/library/{image}
      imagePullPolicy: Never
      args: [backend]
      env:
        - {{name: JWT_SECRET, value: {jwt}}}
        - {{name: APP_API_TOKEN, value: {app_token}}}
        - {{name: DAPR_READY_CHECK, value: "false"}}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {{drop: [ALL]}}
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
    """A privileged container booting systemd, like a kind node (tmpfs /run and /tmp; containerd's and
    kubelet's state on volumes, so containerd's overlay snapshots are not nested in Docker's overlay)."""
    host = docker_engine.host
    image = ensure_base_image(host, "node")
    containerd_bin = ensure_built("containerd")
    kubelet_bin = ensure_built("kubelet")
    name = f"tb-node-{uuid.uuid4().hex[:8]}"
    _ok(
        _docker(
            host, "run", "-d", "--name", name, "--hostname", name, "--privileged", "--network", "none",
            "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
            "-v", "/var/lib/containerd", "-v", "/var/lib/kubelet",
            "-v", f"{containerd_bin}:/usr/local/bin:ro", "-v", f"{kubelet_bin}:/opt/kubelet:ro",
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


def _write(host: str, node: str, path: str, text: str) -> None:
    _ok(
        _docker(
            host,
            "exec",
            "-i",
            node,
            "sh",
            "-c",
            f"mkdir -p $(dirname {path}) && cat > {path}",
            input=text.encode(),
        )
    )


def _start_containerd(host: str, node: str) -> str:
    """containerd as a systemd unit of the node (CRI and CNI configured); returns ``ctr version``."""
    assert _system_state(host, node)[0] == "running"
    _write(host, node, "/etc/containerd/config.toml", CONTAINERD_CONFIG)
    _write(host, node, "/etc/cni/net.d/10-testbed.conflist", CNI_CONFIG)
    _write(host, node, "/etc/systemd/system/containerd.service", CONTAINERD_UNIT)
    _ok(_docker(host, "exec", node, "systemctl", "daemon-reload"))
    _ok(_docker(host, "exec", node, "systemctl", "enable", "--now", "containerd"))
    deadline = time.monotonic() + 60
    while True:
        version = _docker(host, "exec", node, "ctr", "version")
        if version.returncode == 0 or time.monotonic() > deadline:
            return _ok(version)
        time.sleep(1)


def _load(host: str, node: str, namespace: str, *images: str) -> None:
    """``docker save`` from the test bed's engine into the node's containerd (``ctr images import``)."""
    saved = subprocess.run(
        [shutil.which("docker") or "docker", "save", *images],
        env=os.environ | {"DOCKER_HOST": host},
        capture_output=True,
        check=True,
        timeout=600,
    ).stdout
    _ok(
        _docker(
            host,
            "exec",
            "-i",
            node,
            "ctr",
            "-n",
            namespace,
            "images",
            "import",
            "-",
            input=saved,
            timeout=600,
        )
    )


def test_containerd_2_runs_a_container_inside_the_node(docker_engine, node):
    host = docker_engine.host
    server = _start_containerd(host, node).split("Server:", 1)[-1]
    assert CONTAINERD_VERSION in server, server

    image = ensure_base_image(host, "python3")
    _load(host, node, "testbed", image)
    ref = f"docker.io/{image}"  # how ctr names a Docker Hub style reference
    run = _docker(
        host, "exec", node, "ctr", "-n", "testbed", "run", "--rm", ref, f"t-{uuid.uuid4().hex[:6]}",
        "python3", "-c", "import os; print('inside', os.getpid())",
    )  # fmt: skip
    assert _ok(run).split() == ["inside", "1"]


def test_kubelet_runs_a_static_pod_of_the_services_image(docker_engine, node, tmp_path):
    host = docker_engine.host
    base = ensure_base_image(host, "python3")
    services = ensure_services_image(host)
    (tmp_path / "Dockerfile").write_text(SANDBOX_DOCKERFILE)
    build = _docker(
        host, "build", "--network", "none", "--build-arg", f"BASE={base}", "-t", SANDBOX_IMAGE, str(tmp_path)
    )
    _ok(build)
    _start_containerd(host, node)
    _load(host, node, "k8s.io", SANDBOX_IMAGE, services)
    _write(host, node, "/etc/kubernetes/kubelet.yaml", KUBELET_CONFIG)
    _write(host, node, "/etc/systemd/system/kubelet.service", KUBELET_UNIT)
    _write(
        host, node, "/etc/kubernetes/manifests/backend.yaml",
        STATIC_POD.format(image=services, jwt=secrets.token_urlsafe(32),
                          app_token=secrets.token_urlsafe(24)),
    )  # fmt: skip
    _ok(_docker(host, "exec", node, "systemctl", "daemon-reload"))
    _ok(_docker(host, "exec", node, "systemctl", "start", "kubelet"))

    request = f"exec 3<>/dev/tcp/{FIRST_POD_IP}/8000; printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"
    deadline = time.monotonic() + 240
    reply = None
    while time.monotonic() < deadline:
        reply = _docker(host, "exec", node, "bash", "-c", request, timeout=30)
        if reply.returncode == 0 and b"200 OK" in reply.stdout:
            break
        time.sleep(2)
    journal = _docker(host, "exec", node, "journalctl", "-u", "kubelet", "--no-pager", "-o", "cat")
    errors = [line for line in journal.stdout.decode(errors="replace").splitlines() if line.startswith("E")]
    assert reply is not None and b"200 OK" in reply.stdout, (
        "no answer from the pod; kubelet errors:\n" + "\n".join(errors[-10:])
    )
    assert reply.stdout.rstrip().endswith(b'{"status":"ok"}')
    status = _ok(
        _docker(
            host, "exec", node, "bash", "-c",
            "for p in $(pgrep -x todo-service); do grep -E '^(Uid|CapEff|Seccomp):' /proc/$p/status; done",
        )
    )  # fmt: skip
    assert "Uid:\t10001\t10001\t10001\t10001" in status, status
    assert "CapEff:\t0000000000000000" in status, status
    assert "Seccomp:\t2" in status, status  # a seccomp filter: the RuntimeDefault profile
