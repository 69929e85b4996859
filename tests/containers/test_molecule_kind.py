"""The users' kind path, run here: `molecule test -s kind-local` on a real kind cluster.

CI stage ``containers`` (scripts/test) runs it after test_kind_cluster.py; by hand::

    .venv/bin/pytest -q -s tests/containers/test_molecule_kind.py

What it sets up before molecule (everything else is the scenario, molecule/kind-local):

* the test bed's Docker engine (``docker_engine``) and the ``kind`` network in it, the network the
  kind node joins; PostgreSQL and Kafka of the test bed also listening on that network's gateway
  address (``external=``), so pods reach them as an external database and an external Kafka;
* the images no registry can give: the kind node image (``kindest/node:v1.36.3``,
  tests/testbed/kind_node.py), Dapr 1.18.2 (tests/testbed/dapr_images.py) and the services image
  (services/Dockerfile on the Debian base, tests/testbed/images.py), all in that engine;
* the environment the scenario's host_vars read (TODO_KIND_KAFKA_BOOTSTRAP, TODO_DATABASE_URL,
  TODO_SERVICES_IMAGE, TODO_KIND_IMAGES, the test data) and PATH with the pinned kind, helm and
  kubectl and the Docker CLI; DOCKER_HOST points kind, docker and the roles at the test bed's engine.

Then: molecule test -s kind-local (syntax, destroy, prepare, converge, idempotence, verify, destroy),
each step timed and logged to <tmp_path>/<step>.log; before destroy, the three Dapr fixes of issue 15
reverted in turn on the converged cluster must each fail (dapr_reverts.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from containers import dapr_reverts
from deploy.deploy_support import TEST_SECRETS, upstream_data_env

pytestmark = [pytest.mark.testbed, pytest.mark.slow, pytest.mark.timeout(7200)]

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "kind-local"
HOST_VARS = "todo-kind-local.yml"
STEPS = ["syntax", "destroy", "prepare", "converge", "idempotence", "verify"]


@pytest.fixture(scope="module")
def kind_network(docker_engine):
    from testbed.docker_network import ensure_network

    return ensure_network(docker_engine.host, "kind")


@pytest.fixture(scope="module")
def external_services(testbed_run, kind_network):
    from testbed.kafka import Kafka
    from testbed.postgres import Postgres

    pg = Postgres(testbed_run, external=kind_network)
    kafka = Kafka(testbed_run, external=kind_network)
    pg.start()
    try:
        kafka.start()
        try:
            yield pg, kafka
        finally:
            kafka.destroy()
    finally:
        pg.destroy()


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


def molecule(env: dict[str, str], step: str, log_dir: Path) -> tuple[int, str]:
    """Run one molecule step; its output goes to <log_dir>/<step>.log as it runs (tail -f it)."""
    log = log_dir / f"{step}.log"
    with log.open("w") as out:
        result = subprocess.run(
            ["molecule", step, "-s", SCENARIO], cwd=ROOT, env=env, text=True, stdout=out,
            stderr=subprocess.STDOUT, timeout=5400, check=False,
        )
    return result.returncode, log.read_text()


def test_molecule_kind_local(docker_engine, external_services, tmp_path):
    pg, kafka = external_services
    env = scenario_env(docker_engine, pg, kafka, tmp_path / "molecule")
    print(f"molecule logs: {tmp_path}")
    timings = []
    try:
        for step in STEPS:
            started = time.monotonic()
            returncode, output = molecule(env, step, tmp_path)
            timings.append(f"{step} {time.monotonic() - started:.0f}s")
            # The recap on success (the whole log is in tmp_path), the log's end on failure.
            print(f"--- molecule {step} ({timings[-1]}):\n{output[-(20000 if returncode else 1500):]}")
            assert returncode == 0, f"molecule {step} -s {SCENARIO} failed ({', '.join(timings)})"
        # On the converged cluster: each of the three Dapr fixes reverted in turn fails (issue 15 item 5).
        from testbed.kind_cluster import kubectl_binary

        kubectl = dapr_reverts.Kubectl(kubectl_binary(), tmp_path / "molecule" / "kubeconfig")
        for revert, check in dapr_reverts.REVERTS.items():
            started = time.monotonic()
            line = check(kubectl)
            timings.append(f"revert {revert} {time.monotonic() - started:.0f}s")
            print(f"--- reverted: {revert}; the failure: {line}")
    finally:
        molecule(env, "destroy", tmp_path)
        print("molecule kind-local timings: " + ", ".join(timings))
