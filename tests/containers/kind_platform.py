"""The converged platform on a real kind cluster, shared by the checks of the ``containers`` stage.

``molecule -s kind-local`` (syntax, destroy, prepare, converge, idempotence, verify) runs once per
pytest session, in the session fixture ``kind_platform`` (tests/containers/conftest.py); each check
module then uses the same converged cluster and leaves it as it found it:

* test_molecule_kind.py      the converge itself and the three Dapr fixes reverted (dapr_reverts.py)
* test_*_kind.py             monitoring, network policies, autoscaling, runbooks on real pods

By hand, one check with the converge before it::

    .venv/bin/pytest -q -s tests/containers/test_molecule_kind.py

What the fixture sets up before molecule (everything else is the scenario, molecule/kind-local):

* the test bed's Docker engine (``docker_engine``) and the ``kind`` network in it, the network the
  kind node joins; PostgreSQL and Kafka of the test bed also listening on that network's gateway
  address (``external=``), so pods reach them as an external database and an external Kafka;
* the images no registry can give: the kind node image (``kindest/node:v1.36.3``,
  tests/testbed/kind_node.py), Dapr 1.18.2 (tests/testbed/dapr_images.py) and the services image
  (services/Dockerfile on the Debian base, tests/testbed/images.py), all in that engine;
* the environment the scenario's host_vars read (TODO_KIND_KAFKA_BOOTSTRAP, TODO_DATABASE_URL,
  TODO_SERVICES_IMAGE, TODO_KIND_IMAGES, the test data) and PATH with the pinned kind, helm and
  kubectl and the Docker CLI; DOCKER_HOST points kind, docker and the roles at the test bed's engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from containers.dapr_reverts import Kubectl
from deploy.deploy_support import TEST_SECRETS, upstream_data_env

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "kind-local"
HOST_VARS = "todo-kind-local.yml"
STEPS = ["syntax", "destroy", "prepare", "converge", "idempotence", "verify"]


def _monitoring_images(host: str) -> list[str]:
    # kube-prometheus-stack's images, metrics-server and kube-network-policies (issue 16), built here
    from testbed import monitoring_images

    return monitoring_images.load_into_docker(host)


# Images the scenario loads into the node (references in the test bed's engine) beside the Dapr
# images and the services image: each builder takes the engine's address and returns references.
EXTRA_IMAGE_BUILDERS = [_monitoring_images]


@dataclass
class KindPlatform:
    """The converged scenario: its environment, logs, kubectl on its kubeconfig, and runbooks."""

    env: dict[str, str]
    log_dir: Path
    pg: object
    kafka: object
    timings: list[str] = field(default_factory=list)

    @property
    def ephemeral(self) -> Path:
        return Path(self.env["MOLECULE_EPHEMERAL_DIRECTORY"])

    @property
    def kubeconfig(self) -> Path:
        return self.ephemeral / "kubeconfig"

    @property
    def kubectl(self) -> Kubectl:
        from testbed.kind_cluster import kubectl_binary

        return Kubectl(kubectl_binary(), self.kubeconfig)

    def molecule(self, step: str) -> tuple[int, str]:
        """Run one molecule step; its output goes to <log_dir>/<step>.log as it runs (tail -f it)."""
        return self._logged(step, ["molecule", step, "-s", SCENARIO], timeout=5400)

    def playbook(self, playbook: str, *args: str, name: str | None = None) -> tuple[int, str]:
        """``ansible-playbook <playbook> <args>`` against the scenario's inventory, as an operator
        runs a runbook; output in <log_dir>/<name or playbook stem>.log. Returns (rc, output)."""
        argv = ["ansible-playbook", "-i", str(self.ephemeral / "inventory"), str(ROOT / playbook), *args]
        return self._logged(name or Path(playbook).stem, argv, timeout=3600)

    def _logged(self, name: str, argv: list[str], timeout: float) -> tuple[int, str]:
        """Run ``argv`` in the scenario's environment, output to <log_dir>/<name>.log, timed."""
        log = self.log_dir / f"{name}.log"
        started = time.monotonic()
        with log.open("w") as out:
            result = subprocess.run(
                argv,
                cwd=ROOT,
                env=self.env,
                text=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        self.timings.append(f"{name} {time.monotonic() - started:.0f}s")
        return result.returncode, log.read_text()


def scenario_env(docker_engine, pg, kafka, ephemeral: Path) -> dict[str, str]:
    from testbed import dapr_images, gobuild
    from testbed.images import docker_cli, ensure_services_image
    from testbed.kind_cluster import kubectl_binary
    from testbed.kind_node import ensure_node_image

    host = docker_engine.host
    # The scenario names these by value (host_vars): they must be what the test bed builds.
    host_vars = yaml.safe_load((ROOT / "molecule" / SCENARIO / "inventory/host_vars" / HOST_VARS).read_text())
    assert ensure_node_image(host) == host_vars["cluster_kind_node_image"]
    assert host_vars["dapr_chart_version"] == dapr_images.VERSION
    services = ensure_services_image(host)
    images = [*dapr_images.load_into_docker(host), services]
    for build in EXTRA_IMAGE_BUILDERS:
        images.extend(build(host))
    pg.create_database("todo")
    tool_dirs = [
        Path(gobuild.TOOLS["kind"].binary("kind")).parent,
        Path(gobuild.TOOLS["helm"].binary()).parent,
        Path(kubectl_binary()).parent,
        Path(docker_cli()).parent,
    ]
    env = dict(os.environ)
    env.update(TEST_SECRETS)
    env.update(upstream_data_env())
    env.update(
        PATH=":".join([str(Path(sys.executable).parent), *map(str, tool_dirs), env.get("PATH", "")]),
        DOCKER_HOST=host,
        KIND_EXPERIMENTAL_PROVIDER="docker",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        TODO_KIND_KAFKA_BOOTSTRAP=kafka.external_bootstrap("plaintext"),
        TODO_DATABASE_URL=pg.external_dsn("todo"),
        TODO_SERVICES_IMAGE=services,
        TODO_KIND_IMAGES=" ".join(images),
        # Molecule's working directory (the scenario's kubeconfig lands there), known to the test.
        MOLECULE_EPHEMERAL_DIRECTORY=str(ephemeral),
    )
    # The kind inventory's secrets come from the environment (TEST_SECRETS), never from files
    # generated under the developer's home; the database URL is the test bed's, set above.
    return env


def converge(platform: KindPlatform) -> None:
    """Run the scenario up to verify; raise with the failing step's log end if a step fails."""
    print(f"molecule logs: {platform.log_dir}")
    for step in STEPS:
        returncode, output = platform.molecule(step)
        # The recap on success (the whole log is in log_dir), the log's end on failure.
        print(f"--- molecule {step} ({platform.timings[-1]}):\n{output[-(20000 if returncode else 1500) :]}")
        if returncode != 0:
            raise AssertionError(f"molecule {step} -s {SCENARIO} failed ({', '.join(platform.timings)})")
