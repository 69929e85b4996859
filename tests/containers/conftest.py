"""Fixtures of the ``containers`` stage: the platform converged once per session on a real kind
cluster (``kind_platform``, see kind_platform.py), shared by every check module."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def kind_network(docker_engine):
    import subprocess

    from testbed.docker_network import ensure_network
    from testbed.images import docker_cli

    net = ensure_network(docker_engine.host, "kind")
    yield net
    # The engine leaves a network's bridge on the host when it stops: without this each session keeps
    # one, and once Docker's default address pools are used up no session can create its network.
    subprocess.run(
        [docker_cli(), "network", "rm", net.name], env={**os.environ, "DOCKER_HOST": docker_engine.host},
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
def kind_platform(docker_engine, external_services, tmp_path_factory):
    """The platform converged by ``molecule -s kind-local`` up to verify; destroyed at session end."""
    from containers.kind_platform import KindPlatform, converge, scenario_env

    pg, kafka = external_services
    log_dir = tmp_path_factory.mktemp("kind-local")
    # The environment (and so the images) is made once: destroy uses it even when converge fails.
    platform = KindPlatform(scenario_env(docker_engine, pg, kafka, log_dir / "molecule"), log_dir, pg, kafka)
    try:
        converge(platform)
        yield platform
    finally:
        platform.molecule("destroy")
        print("molecule kind-local timings: " + ", ".join(platform.timings))
