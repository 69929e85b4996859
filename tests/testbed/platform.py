"""The whole Todo application on the test bed, and helpers for tests of the five services.

:class:`TodoPlatform` and the session fixture ``todo_platform`` start the five services as real
uvicorn processes (``todo-service <name>``), each with its own daprd, on the test bed's PostgreSQL,
Kafka and Prometheus. Helpers (no processes): :func:`migrate` runs a service's Alembic migrations,
:func:`task_event` builds the CloudEvent the backend would publish, :func:`token_for` signs a JWT.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from testbed.core import ComponentError, ManagedProcess, free_port, repo_root
from testbed.scrape import cluster_like_jobs

#: A JWT signing secret for tests only (never used outside the test bed).
TEST_JWT_SECRET = "testbed-jwt-secret-not-for-production-0123456789"


def migrate(package: str, dsn: str) -> None:
    """Apply ``todo.<package>`` migrations to ``dsn`` (blocking)."""
    from todo.common.migrations import upgrade

    upgrade(package, dsn)


def token_for(user_id: uuid.UUID | str, secret: str = TEST_JWT_SECRET, ttl_seconds: int = 3600) -> str:
    from todo.common.auth import create_access_token

    return create_access_token(uuid.UUID(str(user_id)), secret, ttl_seconds)


def task_snapshot(user_id: uuid.UUID | str, task_id: uuid.UUID | str | None = None, **fields: Any) -> dict:
    """A task as the backend serialises it (fields overridable)."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    task = {
        "id": str(task_id or uuid.uuid4()),
        "user_id": str(user_id),
        "title": "Water the plants",
        "description": "",
        "priority": "medium",
        "tags": [],
        "due_at": None,
        "remind_before_minutes": None,
        "recurrence": None,
        "status": "pending",
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "completed_at": None,
        "series_id": None,
        "occurrence": 1,
        "previous_occurrence_id": None,
        "series_anchor_at": None,
    }
    task.update(fields)
    return task


def task_event(
    kind: str,
    task: dict,
    *,
    changed_fields: list[str] | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> dict:
    """The CloudEvent the backend publishes on ``task-events`` for ``task``."""
    from todo.common.cloudevents import TASK_EVENT_TYPES, build_event

    data = dict(task)
    data["changed_fields"] = changed_fields or []
    return build_event(
        TASK_EVENT_TYPES[kind], "/todo/backend", task["id"], data, event_id=event_id, time=time
    )


# --------------------------------------------------------------------------------------------------
# The whole application: five services (real uvicorn processes), one daprd each, on PG/Kafka/Prometheus

#: service name -> Dapr app-id (docs/contracts.md: they are the same)
SERVICES = ("backend", "audit", "recurring-task", "notification", "sync")
#: A token the sidecars send to the apps (and the backend requires on /internal); test bed only.
TEST_APP_API_TOKEN = "testbed-app-api-token-0123456789"
DATABASE = "todo"
# The component sync subscribes through (the apps role's apps_sync_pubsub_name, the dapr role's fan-out).
SYNC_PUBSUB_NAME = "pubsub-fanout"


# Transient failures (the app answers RETRY/503, or is down) are retried without limit: a consumer
# never acknowledges work it did not do. Poison is moved to <topic>-dlq by the app itself.
RESILIENCY = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: consumer-retries
spec:
  policies:
    retries:
      deliverUntilDone:
        policy: exponential
        initialInterval: 200ms
        maxInterval: 5s
        maxRetries: -1
      publishRetry:
        policy: exponential
        initialInterval: 200ms
        maxInterval: 2s
        maxRetries: 5
  targets:
    components:
      pubsub:
        inbound:
          retry: deliverUntilDone
        outbound:
          retry: publishRetry
"""


class TodoPlatform:
    """Starts and controls the application. ``urls``/``daprd``/``log_files`` are keyed by service."""

    def __init__(
        self,
        *,
        pg: Any,
        kafka: Any,
        prometheus: Any | None,
        start_sidecar: Callable[..., Any],
        workdir: Path,
        log_dir: Path,
        extra_env: dict[str, dict[str, str]] | None = None,
        database: str = DATABASE,
    ) -> None:
        self.database = database
        self.pg = pg
        self.kafka = kafka
        self.prometheus = prometheus
        self.start_sidecar = start_sidecar
        self.workdir = Path(workdir)
        self.log_dir = Path(log_dir)
        self.extra_env = extra_env or {}
        self.urls: dict[str, str] = {}
        self.daprd: dict[str, Any] = {}
        self.log_files: dict[str, Path] = {}
        self.processes: dict[str, ManagedProcess] = {}
        self.app_ports: dict[str, int] = {}
        self.dsn = ""
        # Each service connects as its own role (todo.common.db_roles); roles are global to the
        # server, so their names carry this platform's own prefix.
        from todo.common.migrations import PACKAGES

        self.role_prefix = f"{database}_{uuid.uuid4().hex[:8]}"
        self.role_passwords = {package: uuid.uuid4().hex for package in PACKAGES}
        self.jwt_secret = TEST_JWT_SECRET
        # Self-hosted daprd finds app ids by mDNS across the whole host, so a second platform on the
        # host (another pytest session, e.g. CI's other lane) would answer invocations of "backend".
        # This platform's backend has an app id of its own, and recurring-task asks that one
        # (BACKEND_APP_ID); in a cluster the app id is the service name (docs/contracts.md).
        self.backend_app_id = f"backend-{uuid.uuid4().hex[:8]}"

    def app_id(self, service: str) -> str:
        return self.backend_app_id if service == "backend" else service

    # -- lifecycle ------------------------------------------------------------------------------
    def start_all(self) -> TodoPlatform:
        self.dsn = self.pg.create_database(self.database)
        self._migrate_with_service_roles()
        for service in SERVICES:
            self._write_resources(service)
            self.app_ports[service] = free_port()
            self.log_files[service] = self.log_dir / f"{service}.log"
            self.urls[service] = f"http://127.0.0.1:{self.app_ports[service]}"
        for service in SERVICES:
            self._start_sidecar(service)
            self._start_app(service)
        for service in SERVICES:
            self.wait_ready(service)
        self._scrape()
        self.wait_pipeline()
        return self

    def _migrate_with_service_roles(self) -> None:
        """``todo-migrate all`` as a deployment runs it: migrations, then one role per service."""
        import subprocess

        env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_"))}
        env.update(
            DATABASE_URL=self.dsn,
            DB_SERVICE_ROLE_PREFIX=self.role_prefix,
            **{f"DB_PASSWORD_{p.upper()}": pw for p, pw in self.role_passwords.items()},
        )
        done = subprocess.run(
            [str(Path(sys.executable).with_name("todo-migrate")), "all"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode:
            raise ComponentError(f"todo-migrate all failed: {done.stderr.strip()[-2000:]}")

    def service_dsn(self, service: str) -> str:
        """The DSN of ``service``'s own database role (``self.dsn`` is the owner's)."""
        from todo.cli import SERVICES as PACKAGE_OF

        package = PACKAGE_OF[service]
        login = f"{self.role_prefix}_{package}:{self.role_passwords[package]}"
        return f"postgresql://{login}@{self.pg.host}:{self.pg.port}/{self.database}"

    def wait_pipeline(self, sync_key: str = "sync", timeout: float = 180.0) -> None:
        """Block until a task change made through the API reaches a WebSocket on ``sync_key``.

        Readiness says the processes are up; this says the Kafka consumer groups have joined (a
        new sync group starts at the newest offset, so events before its join would not reach it).
        """
        import httpx
        from websockets.sync.client import connect

        account = {"email": f"probe-{uuid.uuid4().hex[:10]}@example.test", "password": uuid.uuid4().hex}
        api = httpx.Client(base_url=self.urls["backend"], timeout=30)
        try:
            api.post("/api/auth/register", json=account).raise_for_status()
            token = api.post("/api/auth/login", json=account).json()["access_token"]
            api.headers["Authorization"] = f"Bearer {token}"
            ws_url = self.urls[sync_key].replace("http://", "ws://") + "/ws"
            deadline = time.monotonic() + timeout
            with connect(ws_url, subprotocols=["bearer", token], open_timeout=30) as ws:
                while time.monotonic() < deadline:
                    body = {"title": "pipeline probe", "remind_before_minutes": None}
                    r = api.post("/api/tasks", json=body)
                    r.raise_for_status()
                    probe = r.json()["id"]
                    until = time.monotonic() + 5
                    while time.monotonic() < until:
                        try:
                            raw = ws.recv(timeout=max(0.1, until - time.monotonic()))
                        except TimeoutError:
                            break
                        if probe in raw:
                            return
        finally:
            api.close()
        raise ComponentError(
            f"task changes do not reach {sync_key} within {timeout:.0f}s; see {self.log_dir}"
        )

    def stop_all(self) -> None:
        for key in reversed(list(self.urls)):
            with contextlib.suppress(Exception):
                self.stop(key)

    def drop_database(self) -> None:
        import psycopg

        with contextlib.suppress(psycopg.Error), psycopg.connect(self.pg.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            for package in self.role_passwords:
                conn.execute(f'DROP ROLE IF EXISTS "{self.role_prefix}_{package}"')

    def stop(self, service: str) -> None:
        """Stop the service and its sidecar (as a pod going away would)."""
        proc = self.processes.pop(service, None)
        if proc is not None:
            proc.stop()
        sidecar = self.daprd.get(service)
        if sidecar is not None:
            sidecar.stop()

    def start(self, service: str) -> None:
        sidecar = self.daprd.get(service)
        if sidecar is not None:
            sidecar.start()
        else:
            self._start_sidecar(service)
        self._start_app(service)
        self.wait_ready(service)

    def restart(self, service: str) -> None:
        self.stop(service)
        self.start(service)

    def add_replica(self, service: str) -> str:
        """Start one more replica of ``service`` (app + its own daprd); returns its key in ``urls``."""
        n = 2
        while f"{service}#{n}" in self.urls:
            n += 1
        key = f"{service}#{n}"
        self._write_resources(service, key)
        self.app_ports[key] = free_port()
        self.log_files[key] = self.log_dir / f"{service}-{n}.log"
        self.urls[key] = f"http://127.0.0.1:{self.app_ports[key]}"
        self._start_sidecar(key)
        self._start_app(key)
        self.wait_ready(key)
        if service == "sync":
            self.wait_pipeline(key)
        return key

    def restart_app(self, service: str) -> None:
        """Restart only the service process, leaving its sidecar up."""
        proc = self.processes.pop(service)
        proc.stop()
        self._start_app(service)
        self.wait_ready(service)

    # -- pieces ---------------------------------------------------------------------------------
    def resources_dir(self, service: str) -> Path:
        return self.workdir / "dapr" / service

    def _write_resources(self, service: str, key: str | None = None) -> None:
        path = self.resources_dir(key or service)
        path.mkdir(parents=True, exist_ok=True)
        from testbed.daprd import kafka_pubsub_component

        # As in the cluster (dapr role): "pubsub" with the app's own consumer group, shared by its
        # replicas; sync subscribes through "pubsub-fanout" (SYNC_PUBSUB_NAME), whose consumer group
        # is each replica's own (the cluster's {podName}), so every replica sees every event; a new
        # group starts at the newest event.
        component = kafka_pubsub_component(
            self.kafka.plaintext, consumer_group=service, client_id=service, initial_offset="oldest"
        )
        (path / "pubsub.yaml").write_text(component)
        if service == "sync":
            fanout = kafka_pubsub_component(
                self.kafka.plaintext,
                name=SYNC_PUBSUB_NAME,
                consumer_group=f"sync-{uuid.uuid4().hex[:12]}",
                client_id=service,
                initial_offset="newest",
            )
            (path / "pubsub-fanout.yaml").write_text(fanout)
        (path / "resiliency.yaml").write_text(RESILIENCY)

    def _start_sidecar(self, key: str) -> None:
        self.daprd[key] = self.start_sidecar(
            app_id=self.app_id(key.split("#")[0]),
            app_port=self.app_ports[key],
            resources_dir=self.resources_dir(key),
            app_api_token=TEST_APP_API_TOKEN,
        )

    def service_env(self, key: str) -> dict[str, str]:
        service = key.split("#")[0]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "TESTBED_"))}
        env.update(
            DATABASE_URL=self.service_dsn(service),
            JWT_SECRET=self.jwt_secret,
            DAPR_HTTP_PORT=str(self.daprd[key].http_port),
            APP_API_TOKEN=TEST_APP_API_TOKEN,
            SYNC_PUBSUB_NAME=SYNC_PUBSUB_NAME,
            PORT=str(self.app_ports[key]),
            LOG_LEVEL="INFO",
            HOST="127.0.0.1",
            # no balancer polls the test bed's /readyz, so restarts need no drain
            # (tests/fault/test_shutdown.py sets one)
            SHUTDOWN_DRAIN_SECONDS="0",
        )
        if service == "notification":
            env.setdefault("REMINDER_POLL_SECONDS", "0.5")
        if service == "recurring-task":
            env["BACKEND_APP_ID"] = self.backend_app_id
        env.update(self.extra_env.get(service, {}))
        return env

    def _start_app(self, key: str) -> None:
        exe = Path(sys.executable).with_name("todo-service")
        if not exe.exists():
            raise ComponentError(f"{exe} is missing: run scripts/bootstrap (installs the services)")
        proc = ManagedProcess(
            [str(exe), key.split("#")[0], "--host", "127.0.0.1", "--port", str(self.app_ports[key])],
            log_file=self.log_files[key],
            env=self.service_env(key),
            cwd=repo_root(),
        )
        self.processes[key] = proc.start()

    def wait_ready(self, service: str, timeout: float = 180.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            proc = self.processes.get(service)
            if proc is not None and not proc.alive():
                raise ComponentError(f"{service} exited ({proc.returncode()}); see {self.log_files[service]}")
            try:
                r = httpx.get(f"{self.urls[service]}/readyz", timeout=3)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.3)
        raise ComponentError(
            f"{service} not ready within {timeout:.0f}s ({last}); see {self.log_files[service]}"
        )

    def _scrape(self) -> None:
        """Scrape the services and sidecars with the cluster's job and label scheme."""
        if self.prometheus is None:
            return
        self.prometheus.set_scrape_config(cluster_like_jobs(self.urls, self.daprd, interval="5s"))

    def describe(self) -> dict[str, Any]:
        return {
            "urls": dict(self.urls),
            "websocket": self.urls["sync"].replace("http://", "ws://") + "/ws",
            "prometheus": getattr(self.prometheus, "url", None),
            "logs": {k: str(v) for k, v in self.log_files.items()},
        }


@pytest.fixture(scope="session")
def todo_platform(pg, kafka, prometheus, daprd_factory, testbed_run) -> Iterator[TodoPlatform]:
    """The whole application on the test bed (see :class:`TodoPlatform`)."""
    run_dir = Path(testbed_run.data_dir) / "todo-platform"
    platform = TodoPlatform(
        pg=pg,
        kafka=kafka,
        prometheus=prometheus,
        start_sidecar=_factory_adapter(daprd_factory),
        workdir=run_dir,
        log_dir=Path(testbed_run.log_dir),
        database=f"todo_tests_{os.getpid()}",
    )
    try:
        platform.start_all()
        yield platform
    finally:
        platform.stop_all()
        platform.drop_database()


def _factory_adapter(daprd_factory: Callable[..., Any]) -> Callable[..., Any]:
    def start(*, app_id: str, app_port: int, resources_dir: Path, app_api_token: str) -> Any:
        return daprd_factory(app_id, app_port, resources_dir, app_api_token=app_api_token)

    return start


# --------------------------------------------------------------------------------------------------
# scripts/run-local: the application on the detached test bed of `scripts/testbed up`


def _standalone_sidecar_starter(run: Any) -> Callable[..., Any]:
    """Start daprd outside pytest through the test bed's daprd component."""
    from testbed.daprd import Daprd

    def start(*, app_id: str, app_port: int, resources_dir: Path, app_api_token: str) -> Any:
        sidecar = Daprd(run, app_id, app_port, resources_dir, app_api_token=app_api_token)
        sidecar.start()
        return sidecar

    return start


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import signal

    from testbed.core import Run, acquire
    from testbed.kafka import Kafka
    from testbed.postgres import Postgres
    from testbed.prometheus import Prometheus

    parser = argparse.ArgumentParser(prog="run-local", description="Run the Todo application locally.")
    parser.add_argument("--json", action="store_true", help="print the URLs as JSON")
    args = parser.parse_args(argv)
    run = Run.for_session()
    pg, _ = acquire("postgres", Postgres, run)
    kafka, _ = acquire("kafka", Kafka, run)
    prometheus, _ = acquire("prometheus", Prometheus, run)
    platform = TodoPlatform(
        pg=pg,
        kafka=kafka,
        prometheus=prometheus,
        start_sidecar=_standalone_sidecar_starter(run),
        workdir=Path(run.data_dir) / "todo-platform",
        log_dir=Path(run.log_dir),
    )
    stop = False

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        platform.start_all()
        info = platform.describe()
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            print(_banner(info, platform), flush=True)
        while not stop:
            for service, proc in platform.processes.items():
                if not proc.alive():
                    print(f"run-local: {service} exited; see {platform.log_files[service]}", file=sys.stderr)
                    stop = True
            time.sleep(0.5)
    finally:
        print("run-local: stopping the services (the test bed stays up: scripts/testbed down)", flush=True)
        platform.stop_all()
    return 0


def _banner(info: dict[str, Any], platform: TodoPlatform) -> str:
    urls = info["urls"]
    lines = [
        "",
        "Todo platform is running (Ctrl-C stops it):",
        f"  API (backend)     {urls['backend']}/docs",
        f"  Audit API         {urls['audit']}/api/audit",
        f"  WebSocket (sync)  {info['websocket']} (Sec-WebSocket-Protocol: bearer, <access_token>)",
        f"  Prometheus        {info['prometheus']}",
        f"  Logs              {platform.log_dir}/<service>.log",
        "",
        "Try it:",
        f"  curl -s -XPOST {urls['backend']}/api/auth/register -H 'content-type: application/json' \\",
        '       -d \'{"email":"me@example.test","password":"correct-horse-battery"}\'',
        f"  curl -s -XPOST {urls['backend']}/api/auth/login -H 'content-type: application/json' \\",
        '       -d \'{"email":"me@example.test","password":"correct-horse-battery"}\'',
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
