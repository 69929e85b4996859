"""A Docker network of the test bed's own engine, and the address the host has on it.

A kind cluster in the test bed's Docker puts its nodes on a bridge network (``kind``).  The host end
of that bridge carries the network's gateway address, so a process on the host that listens there is
reachable from the nodes, and from their pods (kind masquerades pod traffic leaving a node to the
node's address on that network).  PostgreSQL and Kafka use this to serve a kind cluster as its
external database and Kafka (``Postgres(run, external=net)``, ``Kafka(run, external=net)``).

The address is always read from Docker (``docker network inspect``), never assumed.

    net = ensure_network(docker_engine.host, "kind")   # created when missing; Docker picks the subnet
    net.gateway, net.subnet                             # e.g. "172.18.0.1", "172.18.0.0/16"
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from dataclasses import dataclass

from testbed.core import ComponentError, file_lock, log, state_dir
from testbed.images import docker_cli


@dataclass(frozen=True)
class DockerNetwork:
    """A bridge network of a Docker engine: its name, IPv4 subnet and gateway (the host's address)."""

    name: str
    subnet: str
    gateway: str


def _docker(host: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [docker_cli(), *args],
        env=os.environ | {"DOCKER_HOST": host},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def inspect_network(host: str, name: str) -> DockerNetwork:
    """The IPv4 subnet and gateway of network ``name`` in the engine at ``host``, as Docker reports them."""
    done = _docker(host, "network", "inspect", name)
    if done.returncode != 0:
        raise ComponentError(f"docker network inspect {name} failed: {done.stderr.strip()}")
    (info,) = json.loads(done.stdout)
    for config in (info.get("IPAM") or {}).get("Config") or []:
        subnet, gateway = config.get("Subnet"), config.get("Gateway")
        if subnet and gateway and ipaddress.ip_network(subnet).version == 4:
            return DockerNetwork(name=name, subnet=subnet, gateway=gateway)
    raise ComponentError(
        f"Docker network {name} has no IPv4 subnet with a gateway (IPAM config: "
        f"{(info.get('IPAM') or {}).get('Config')}); recreate it as a bridge network with IPv4"
    )


def ensure_network(host: str, name: str = "kind") -> DockerNetwork:
    """Network ``name`` in the engine at ``host``, created as a bridge network when it is missing (the
    subnet is Docker's choice); returns its subnet and gateway.  kind uses an existing network of its
    name as it finds it."""
    with file_lock(state_dir() / f".docker-network-{name}.lock"):
        if _docker(host, "network", "inspect", name).returncode != 0:
            log(f"creating Docker network {name}")
            done = _docker(host, "network", "create", "--driver", "bridge", name)
            if done.returncode != 0:
                raise ComponentError(f"docker network create {name} failed: {done.stderr.strip()}")
    return inspect_network(host, name)
