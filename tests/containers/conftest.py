"""Fixtures of the ``containers`` stage: the platform converged once per session on a real kind
cluster (``kind_platform``, see kind_platform.py), shared by every check module."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def kind_network(docker_engine):
    from testbed.docker_network import ensure_network

    # removed with the engine (Docker.destroy), which also takes the bridge off the host
    return ensure_network(docker_engine.host, "kind")


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
