"""daprd, the Dapr sidecar, run in self-hosted mode next to a test app.

The binary is built from the Go module proxy at a pinned version (``testbed.gobuild``, wrapper module
``tests/testbed/gomod/daprd``, ``-tags stablecomponents``); it is the daprd of the one Dapr build
(tool ``dapr-control-plane``) that the images of a real cluster are made from too, so a cold
machine builds Dapr once.  One :class:`Daprd` is one sidecar:

* ``--mode standalone`` with no placement, scheduler or sentry (pub/sub, state, bindings and service
  invocation work; actors, jobs and workflows need the control plane and are out of scope);
* free loopback ports for the Dapr HTTP API (``http_port``), gRPC API (``grpc_port``), internal
  gRPC, and Prometheus metrics (``metrics_port``);
* components/resiliency/subscriptions are read from ``resources_dir`` (``--resources-path``);
* ``api_token``/``app_api_token`` become ``DAPR_API_TOKEN``/``APP_API_TOKEN`` of the daprd process
  (daprd then requires ``dapr-api-token`` from the app, and sends ``dapr-api-token`` to the app).

Health: ``start()`` waits for ``GET /v1.0/healthz/outbound`` (components loaded, the Dapr API usable),
which does not need the app to be up - apps are often started after their sidecar.
:meth:`Daprd.wait_app_ready` waits for the full ``/v1.0/healthz`` (the app channel is up too, and
programmatic subscriptions have been read from the app).

``stop()``/``start()`` keep the ports, so a restarted sidecar is found at the same address.

Kafka 4.x note (KIP-896 removed the pre-2.1 protocol versions): the pub/sub component's ``version``
metadata is the Kafka protocol version the client (Sarama 1.48) announces; Dapr's default is 2.0.0.
Against the test bed's Kafka 4.2.2, publish and subscribe were verified with ``version`` 2.0.0 (the
default), 2.1.0, 3.6.0 and 4.0.0 - Sarama negotiates API versions with the broker, so all work.
:func:`kafka_pubsub_component` still sets ``3.6.0`` explicitly so the manifests do not depend on a
default that predates Kafka 4.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from testbed import gobuild
from testbed.core import Component, ComponentError, Run, free_port

#: Kafka protocol version announced by the Dapr Kafka component (see the module docstring)
KAFKA_PROTOCOL_VERSION = "3.6.0"

_instance_numbers = itertools.count(1)


def daprd_binary() -> Path:
    """The pinned daprd, built into the tool cache on first use (a cold build takes many minutes)."""
    return gobuild.TOOLS[gobuild.DAPR_TOOL].binary("daprd")


class Daprd(Component):
    """One daprd sidecar in self-hosted mode for ``app_id`` (see the module docstring)."""

    name = "daprd"
    start_timeout = 90.0

    def __init__(
        self,
        run: Run | None,
        app_id: str,
        app_port: int | None,
        resources_dir: str | Path | None,
        *,
        app_protocol: str = "http",
        config: str | Path | None = None,
        max_request_size_mb: int | None = None,
        api_token: str | None = None,
        app_api_token: str | None = None,
        log_level: str = "info",
        enable_metrics: bool = True,
        env: dict[str, str] | None = None,
        extra_args: list[str] | tuple[str, ...] = (),
    ) -> None:
        super().__init__(run)
        self.app_id = app_id
        self.app_port = app_port
        self.resources_dir = Path(resources_dir) if resources_dir is not None else None
        self.app_protocol = app_protocol
        self.config = Path(config) if config is not None else None
        self.max_request_size_mb = max_request_size_mb
        self.api_token = api_token
        self.app_api_token = app_api_token
        self.log_level = log_level
        self.enable_metrics = enable_metrics
        self.extra_env = dict(env or {})
        self.extra_args = list(extra_args)
        # instance attribute: one log file per sidecar (daprd-<app-id>-<n>.log)
        self.name = f"daprd-{app_id}-{next(_instance_numbers)}"
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.internal_grpc_port = free_port()
        self.metrics_port = free_port()

    # -- addresses -------------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    # -- lifecycle -------------------------------------------------------------------------------
    def argv(self, binary: str | Path) -> list[str]:
        args = [
            str(binary),
            "--mode", "standalone",
            "--app-id", self.app_id,
            "--dapr-listen-addresses", "127.0.0.1",
            "--dapr-http-port", str(self.http_port),
            "--dapr-grpc-port", str(self.grpc_port),
            "--dapr-internal-grpc-port", str(self.internal_grpc_port),
            "--dapr-internal-grpc-listen-address", "127.0.0.1",
            "--metrics-port", str(self.metrics_port),
            f"--enable-metrics={'true' if self.enable_metrics else 'false'}",
            "--enable-app-health-check=false",
            "--log-level", self.log_level,
        ]  # fmt: skip
        if self.app_port is not None:
            args += ["--app-port", str(self.app_port), "--app-protocol", self.app_protocol]
            args += ["--app-channel-address", "127.0.0.1"]
        if self.resources_dir is not None:
            args += ["--resources-path", str(self.resources_dir)]
        if self.config is not None:
            args += ["--config", str(self.config)]
        if self.max_request_size_mb is not None:
            args += ["--dapr-http-max-request-size", str(self.max_request_size_mb)]
        return args + self.extra_args

    def process_env(self) -> dict[str, str]:
        # Start from a clean slate of Dapr variables so a developer's shell cannot leak tokens in.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "APP_API_TOKEN"))}
        if self.api_token:
            env["DAPR_API_TOKEN"] = self.api_token
        if self.app_api_token:
            env["APP_API_TOKEN"] = self.app_api_token
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        if self.resources_dir is not None and not self.resources_dir.is_dir():
            raise ComponentError(f"daprd {self.app_id}: resources dir {self.resources_dir} does not exist")
        binary = daprd_binary()
        self.spawn(self.argv(binary), env=self.process_env(), cwd=self.workdir)
        self.wait_healthy()
        self.started()

    def _headers(self) -> dict[str, str]:
        return {"dapr-api-token": self.api_token} if self.api_token else {}

    def _get(self, path: str, timeout: float = 2.0) -> int:
        return httpx.get(self.http_url + path, headers=self._headers(), timeout=timeout).status_code

    def is_healthy(self) -> bool:
        """The Dapr API is usable: components are loaded (``/v1.0/healthz/outbound``)."""
        return self._get("/v1.0/healthz/outbound") == 204

    def responding(self) -> bool:
        """Whether anything answers on the Dapr HTTP port (False while stopped)."""
        try:
            self._get("/v1.0/healthz/outbound", timeout=1.0)
        except httpx.TransportError:
            return False
        return True

    def is_app_ready(self) -> bool:
        """daprd is fully ready, the app channel included (``/v1.0/healthz``)."""
        return self._get("/v1.0/healthz") == 204

    def wait_app_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.is_app_ready():
            if not self.processes_alive():
                raise ComponentError(f"daprd {self.app_id} exited; see {self.log_file}")
            if time.monotonic() > deadline:
                raise ComponentError(
                    f"daprd {self.app_id} did not see its app on port {self.app_port} within "
                    f"{timeout:.0f}s; see {self.log_file}" + self._log_tail(self.log_file)
                )
            time.sleep(0.25)

    def metadata(self) -> dict[str, Any]:
        """``GET /v1.0/metadata``: loaded components, subscriptions, app connection."""
        response = httpx.get(self.http_url + "/v1.0/metadata", headers=self._headers(), timeout=10)
        response.raise_for_status()
        return response.json()

    # -- description -----------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id,
            "app_port": self.app_port,
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "metrics_port": self.metrics_port,
            "resources_dir": str(self.resources_dir) if self.resources_dir else None,
            "binary": str(gobuild.TOOLS[gobuild.DAPR_TOOL].bin_dir / "daprd"),
            "version": gobuild.DAPR_VERSION,
        }

    def env(self) -> dict[str, str]:
        return {"DAPR_HTTP_PORT": str(self.http_port), "DAPR_GRPC_PORT": str(self.grpc_port)}


def kafka_pubsub_component(
    brokers: str,
    *,
    name: str = "pubsub",
    consumer_group: str,
    client_id: str | None = None,
    initial_offset: str = "newest",
    protocol_version: str = KAFKA_PROTOCOL_VERSION,
    sasl: dict[str, str] | None = None,
    ca_pem: str | None = None,
    scopes: list[str] | None = None,
) -> str:
    """A ``pubsub.kafka`` Component manifest for a test-bed Kafka listener.

    ``sasl`` = {"mechanism": "SHA-512"|"PLAIN", "username": ..., "password": ...} switches to
    ``authType: password``; ``ca_pem`` (PEM text) enables TLS with that CA, otherwise TLS is off.
    """
    meta: list[tuple[str, str]] = [
        ("brokers", brokers),
        ("consumerGroup", consumer_group),
        ("clientID", client_id or consumer_group),
        ("initialOffset", initial_offset),
        ("version", protocol_version),
    ]
    if sasl:
        meta += [
            ("authType", "password"),
            ("saslUsername", sasl["username"]),
            ("saslPassword", sasl["password"]),
            ("saslMechanism", sasl["mechanism"]),
        ]
    else:
        meta.append(("authType", "none"))
    if ca_pem:
        meta += [("disableTls", "false"), ("caCert", ca_pem)]
    else:
        meta.append(("disableTls", "true"))
    lines = [
        "apiVersion: dapr.io/v1alpha1",
        "kind: Component",
        "metadata:",
        f"  name: {name}",
        "spec:",
        "  type: pubsub.kafka",
        "  version: v1",
        "  metadata:",
    ]
    for key, value in meta:
        if "\n" in value:
            body = "\n".join("        " + line for line in value.strip().splitlines())
            lines += [f"    - name: {key}", "      value: |", body]
        else:
            lines += [f"    - name: {key}", f"      value: {_yaml_str(value)}"]
    if scopes:
        lines.append("scopes:")
        lines += [f"  - {_yaml_str(s)}" for s in scopes]
    return "\n".join(lines) + "\n"


def _yaml_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class DaprdFactory:
    """What the ``daprd_factory`` fixture yields: ``factory(app_id, app_port, resources_dir, **opts)``
    starts a :class:`Daprd` (options as its constructor) and returns it; :meth:`close` stops all."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.started: list[Daprd] = []

    def __call__(
        self, app_id: str, app_port: int | None, resources_dir: str | Path | None, **opts: Any
    ) -> Daprd:
        sidecar = Daprd(self.run, app_id, app_port, resources_dir, **opts)
        self.started.append(sidecar)
        sidecar.start()
        return sidecar

    def close(self) -> None:
        errors = []
        for sidecar in reversed(self.started):
            try:
                sidecar.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        self.started.clear()
        if errors:
            raise errors[0]


class SubscriberApp:
    """A minimal Dapr app for tests: answers GET /dapr/subscribe with ``subscriptions`` (programmatic
    subscription) and records every POST as (path, headers, body); ``port`` is where it listens."""

    def __init__(self, subscriptions: list[dict[str, Any]], token: str | None = None) -> None:
        self.subscriptions = subscriptions
        self.token = token
        self.events: queue.Queue[tuple[str, dict[str, str], Any]] = queue.Queue()
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _reply(self, code: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path == "/dapr/subscribe":
                    self._reply(200, app.subscriptions)
                elif self.path == "/dapr/config":
                    self._reply(200, {})
                else:
                    self._reply(404, {})

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                app.events.put((self.path, dict(self.headers), body))
                self._reply(200, {"status": "SUCCESS"})

            def do_OPTIONS(self) -> None:  # noqa: N802 - http.server API
                self._reply(200, {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_event(self, seconds: float) -> tuple[str, dict[str, str], Any]:
        """The next POST received, or AssertionError after ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                return self.events.get(timeout=1)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no event reached the subscriber within {seconds:.0f}s") from None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
