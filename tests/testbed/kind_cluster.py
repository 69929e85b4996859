"""A real kind cluster in the test bed's Docker engine, from the node image built here.

``create_kind_cluster`` runs the pinned kind binary (``kind create cluster``) against the engine at
``host`` with :data:`testbed.kind_node.NODE_IMAGE` and the product's kind configuration
(``roles/cluster/files/kind-config.yml``), waits for the node and CoreDNS to be Ready and returns a
:class:`KindCluster`.  The test bed's engine publishes no ports (no iptables, no userland proxy), so
the kubeconfig kind writes (``https://127.0.0.1:<port>``) is unusable; the one handed out talks to
the control-plane container's address on the cluster's Docker network, discovered from Docker::

    cluster = create_kind_cluster(docker_engine.host, workdir)
    cluster.kubectl("get", "nodes")           # subprocess.CompletedProcess, text
    cluster.kubeconfig, cluster.context, cluster.network, cluster.node_ip
    cluster.load_image("todo-services:testbed-…")   # kind load docker-image
    cluster.delete()

The pytest fixture ``kind_cluster`` (:mod:`testbed.pytest_plugin_kind`) yields one per session.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from testbed.core import ComponentError, log, repo_root
from testbed.gobuild import TOOLS
from testbed.images import docker_cli
from testbed.kind_node import ensure_node_image

#: the product's kind configuration (the cluster role's); only the node image differs from a user's run
PRODUCT_KIND_CONFIG = repo_root() / "roles/cluster/files/kind-config.yml"
#: kind's default network name (``KIND_EXPERIMENTAL_DOCKER_NETWORK`` unset)
KIND_NETWORK = "kind"


def kind_binary() -> Path:
    return TOOLS["kind"].binary("kind")


def kubectl_binary() -> Path:
    return TOOLS["kubernetes-node"].binary("kubectl")


@dataclass
class KindCluster:
    name: str
    host: str
    kubeconfig: Path
    context: str
    network: str
    node_ip: str
    #: seconds `kind create cluster` took, and until the node and CoreDNS were Ready
    create_seconds: float = 0.0
    ready_seconds: float = 0.0

    @property
    def control_plane(self) -> str:
        return f"{self.name}-control-plane"

    def kind_env(self) -> dict[str, str]:
        return _kind_env(self.host)

    def kubectl(self, *args: str, check: bool = True, timeout: float = 300, input: str | None = None):
        done = subprocess.run(
            [str(kubectl_binary()), "--kubeconfig", str(self.kubeconfig), "--context", self.context, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        if check and done.returncode != 0:
            raise ComponentError(f"kubectl {' '.join(args)} failed: {done.stderr.strip() or done.stdout}")
        return done

    def load_image(self, ref: str) -> None:
        """``kind load docker-image``: the image from the engine into the node's containerd."""
        _run_kind(self.host, "load", "docker-image", ref, "--name", self.name)

    def node_exec(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [docker_cli(), "exec", self.control_plane, *args],
            env=self.kind_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def diagnostics(self) -> str:
        """What to read when the cluster misbehaves: kubelet's and containerd's last errors, pods."""
        parts = []
        for unit in ("kubelet", "containerd"):
            journal = self.node_exec("journalctl", "-u", unit, "--no-pager", "-o", "cat", "-n", "400")
            errors = [
                line for line in journal.stdout.splitlines() if line.startswith("E") or "level=error" in line
            ]
            parts.append(f"--- {unit} errors (last 15):\n" + "\n".join(errors[-15:]))
        pods = self.kubectl("get", "pods", "-A", "-o", "wide", check=False, timeout=30)
        parts.append("--- pods:\n" + (pods.stdout or pods.stderr))
        return "\n".join(parts)

    def delete(self) -> None:
        _run_kind(self.host, "delete", "cluster", "--name", self.name, check=False)


def _kind_env(host: str) -> dict[str, str]:
    # kind drives the `docker` CLI; the provider is named so a podman on PATH is never picked
    docker_dir = str(Path(docker_cli()).parent)
    path = os.environ.get("PATH", "")
    return os.environ | {
        "DOCKER_HOST": host,
        "KIND_EXPERIMENTAL_PROVIDER": "docker",
        "PATH": f"{docker_dir}:{path}" if docker_dir not in path.split(":") else path,
    }


def _run_kind(host: str, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(kind_binary()), *args],
        env=_kind_env(host),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise ComponentError(f"kind {' '.join(args)} failed (exit {done.returncode}):\n{done.stderr.strip()}")
    return done


def _node_ip(host: str, container: str, network: str) -> str:
    done = subprocess.run(
        [docker_cli(), "inspect", "--format", "{{json .NetworkSettings.Networks}}", container],
        env=os.environ | {"DOCKER_HOST": host},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ComponentError(f"docker inspect {container} failed: {done.stderr.strip()}")
    networks = json.loads(done.stdout)
    address = (networks.get(network) or {}).get("IPAddress")
    if not address:
        raise ComponentError(f"{container} has no IPv4 address on network {network!r}: {networks}")
    return address


def _wait(cluster: KindCluster, what: str, *args: str, timeout: float = 300) -> None:
    done = cluster.kubectl(*args, f"--timeout={int(timeout)}s", check=False, timeout=timeout + 30)
    if done.returncode != 0:
        raise ComponentError(
            f"{what} not ready within {timeout:.0f}s: {done.stderr.strip()}\n{cluster.diagnostics()}"
        )


def create_kind_cluster(
    host: str, workdir: Path, *, name: str | None = None, config: Path = PRODUCT_KIND_CONFIG
) -> KindCluster:
    """``kind create cluster`` with the node image built here; returns once node and CoreDNS are Ready."""
    image = ensure_node_image(host)
    name = name or f"tb-{uuid.uuid4().hex[:6]}"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(f"kind create cluster --name {name} --image {image}")
    done = _run_kind(
        host, "create", "cluster", "--name", name, "--image", image, "--config", str(config),
        "--kubeconfig", str(workdir / "kubeconfig.kind"), "--retain", "--wait", "0s",
        check=False,
    )  # fmt: skip
    create_seconds = time.monotonic() - started
    if done.returncode != 0:
        logs = workdir / "kind-logs"
        _run_kind(host, "export", "logs", str(logs), "--name", name, check=False)
        _run_kind(host, "delete", "cluster", "--name", name, check=False)
        raise ComponentError(
            f"kind create cluster failed (exit {done.returncode}); logs in {logs}:\n"
            + done.stderr.strip()[-3000:]
        )
    context = f"kind-{name}"
    node_ip = _node_ip(host, f"{name}-control-plane", KIND_NETWORK)
    internal = _run_kind(host, "get", "kubeconfig", "--internal", "--name", name).stdout
    kubeconfig_doc = yaml.safe_load(internal)
    for entry in kubeconfig_doc["clusters"]:
        entry["cluster"]["server"] = f"https://{node_ip}:6443"
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_doc))
    kubeconfig.chmod(0o600)
    cluster = KindCluster(name, host, kubeconfig, context, KIND_NETWORK, node_ip, round(create_seconds, 1))
    try:
        _wait(cluster, "the node", "wait", "--for=condition=Ready", "node", "--all")
        _wait(cluster, "CoreDNS", "-n", "kube-system", "rollout", "status", "deployment/coredns")
    except BaseException:
        cluster.delete()
        raise
    cluster.ready_seconds = round(time.monotonic() - started, 1)
    log(f"kind cluster {name}: created {cluster.create_seconds:.0f}s, Ready {cluster.ready_seconds:.0f}s")
    return cluster
