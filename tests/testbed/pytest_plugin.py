"""pytest fixtures for PostgreSQL, Kafka, Prometheus and Docker (session-scoped).

Each fixture reuses the instance of a running ``scripts/testbed up`` (found through
``.testbed/state.json``, its processes alive and healthy) and otherwise starts its own for the session
and tears it down at the end.  Set ``TESTBED_NO_REUSE=1`` to always start private instances.
A missing prerequisite raises :class:`testbed.core.MissingTool`: the test errors, it is never skipped.

Start-up is parallel: after collection, every component that some selected test needs (through the
fixtures named in :data:`PRESTART`) starts in a background thread, so a session waits for the slowest
component rather than the sum.  Other plugins may add entries to :data:`PRESTART`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from testbed.core import Component, Run, acquire, install_teardown_handlers

# The whole application (five services, each with its daprd) as a session fixture, registered here
# once for every test directory. A test module or conftest that imported it itself would get a
# second platform beside the first (same Kafka, database and app ids).
from testbed.platform import todo_platform  # noqa: F401

#: fixture name -> (component name, "module:Class") started ahead of time when a test needs it
PRESTART: dict[str, tuple[str, str]] = {
    "pg": ("postgres", "testbed.postgres:Postgres"),
    "kafka": ("kafka", "testbed.kafka:Kafka"),
    "prometheus": ("prometheus", "testbed.prometheus:Prometheus"),
}

_run: Run | None = None
_pending: dict[str, Future[tuple[Component, bool]]] = {}
_pool: ThreadPoolExecutor | None = None


def session_run() -> Run:
    global _run
    if _run is None:
        _run = Run.for_session()
    return _run


def _factory(path: str) -> Callable[[Run], Component]:
    mod, _, cls = path.partition(":")
    return getattr(importlib.import_module(mod), cls)


def _prestart(config: pytest.Config, items: list[pytest.Item]) -> None:
    global _pool
    if config.getoption("collectonly", False) or config.getoption("testbed_no_prestart", False):
        return
    used: set[str] = set()
    for item in items:
        used.update(getattr(item, "fixturenames", ()))
    wanted = [(fx, spec) for fx, spec in PRESTART.items() if fx in used]
    if len(wanted) < 2:
        return  # nothing to overlap
    install_teardown_handlers()  # from the main thread, before worker threads spawn processes
    run = session_run()
    _pool = ThreadPoolExecutor(max_workers=len(wanted), thread_name_prefix="testbed-start")
    for _fixture, (name, path) in wanted:
        _pending[name] = _pool.submit(acquire, name, _factory(path), run)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--testbed-no-prestart",
        action="store_true",
        dest="testbed_no_prestart",
        help="start test-bed components lazily, one at a time, when a fixture first needs them",
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    _prestart(config, items)


def _teardown_unused() -> None:
    """Tear down pre-started components whose fixture never ran (e.g. its tests were skipped by -x)."""
    for future in list(_pending.values()):
        try:
            comp, owned = future.result()
        except Exception:  # noqa: S112 - the failure was (or would have been) reported by the fixture
            continue
        if owned:
            _teardown(comp)
    _pending.clear()


def pytest_unconfigure(config: pytest.Config) -> None:
    _teardown_unused()
    if _pool is not None:
        _pool.shutdown(wait=True)


@pytest.fixture(scope="session")
def testbed_run() -> Iterator[Run]:
    """Where components started by this pytest session keep their data and logs."""
    run = session_run()
    yield run
    _teardown_unused()
    run.remove_data()


def _teardown(comp: Component) -> None:
    destroy = getattr(comp, "destroy", None)
    if destroy is not None:
        destroy()
    else:
        comp.stop()


def _provide(name: str, factory: Callable[[Run], Component], run: Run) -> Iterator[Component]:
    pending = _pending.pop(name, None)
    comp, owned = pending.result() if pending is not None else acquire(name, factory, run)
    try:
        yield comp
    finally:
        if owned:
            _teardown(comp)


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
    """Prometheus: .url .set_scrape_config(jobs) .query(promql) .wait_for(promql)."""
    from testbed.prometheus import Prometheus

    yield from _provide("prometheus", Prometheus, testbed_run)


@pytest.fixture(scope="session")
def docker_engine(testbed_run: Run) -> Iterator[Component]:
    """A Docker engine of the test bed's own: .host (``unix://…``, use as DOCKER_HOST)."""
    from testbed.docker import Docker

    yield from _provide("docker", Docker, testbed_run)
