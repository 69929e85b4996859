"""pytest fixtures for PostgreSQL, Kafka and Prometheus (session-scoped).

Each fixture reuses the instance of a running ``scripts/testbed up`` (found through
``.testbed/state.json``, its processes alive and healthy) and otherwise starts its own for the session
and tears it down at the end.  Set ``TESTBED_NO_REUSE=1`` to always start private instances.
A missing prerequisite raises :class:`testbed.core.MissingTool`: the test errors, it is never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.core import Component, Run, acquire


@pytest.fixture(scope="session")
def testbed_run() -> Iterator[Run]:
    """Where components started by this pytest session keep their data and logs."""
    run = Run.for_session()
    yield run
    run.remove_data()


def _provide(name: str, factory: type[Component], run: Run) -> Iterator[Component]:
    comp, owned = acquire(name, factory, run)
    try:
        yield comp
    finally:
        if owned:
            destroy = getattr(comp, "destroy", None)
            if destroy is not None:
                destroy()
            else:
                comp.stop()


@pytest.fixture(scope="session")
def pg(testbed_run: Run) -> Iterator[Component]:
    """PostgreSQL: .host .port .user .password .dsn(db) .create_database(name)."""
    from testbed.postgres import Postgres

    yield from _provide("postgres", Postgres, testbed_run)


@pytest.fixture(scope="session")
def kafka(testbed_run: Run) -> Iterator[Component]:
    """Kafka (KRaft, three listeners): .plaintext .scram .sasl_ssl .client_config(listener) …"""
    from testbed.kafka import Kafka

    yield from _provide("kafka", Kafka, testbed_run)


@pytest.fixture(scope="session")
def prometheus(testbed_run: Run) -> Iterator[Component]:
    """Prometheus: .url .set_scrape_config(jobs) .query(promql)."""
    from testbed.prometheus import Prometheus

    yield from _provide("prometheus", Prometheus, testbed_run)


@pytest.fixture(scope="session")
def docker_engine(testbed_run: Run) -> Iterator[Component]:
    """A Docker engine of the test bed's own: .host (``unix://…``, use as DOCKER_HOST)."""
    from testbed.docker import Docker

    yield from _provide("docker", Docker, testbed_run)
