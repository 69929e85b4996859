"""Alertmanager (the version kube-prometheus-stack deploys, built from the Go proxy by
:mod:`testbed.gobuild`), run as our own process with a given configuration file.

Not a default component: a test starts one with the configuration it checks
(``Alertmanager(run, config_text).start()``) and stops it.
"""

from __future__ import annotations

from typing import Any

from testbed.core import Component, free_port
from testbed.gobuild import ensure_built


class Alertmanager(Component):
    name = "alertmanager"
    start_timeout = 60.0

    def __init__(self, run: Any = None, config_text: str = "") -> None:
        super().__init__(run)
        self.host = "127.0.0.1"
        self.port = 0
        self.config_text = config_text

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        binary = ensure_built("alertmanager") / "alertmanager"
        self.port = self.port or free_port()
        config = self.workdir / "alertmanager.yml"
        config.write_text(self.config_text)
        self.spawn(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address={self.host}:{self.port}",
                # a single instance: no gossip port to bind, no peers to wait for
                "--cluster.listen-address=",
                "--log.level=info",
            ]
        )
        self.wait_healthy()
        self.started()

    def is_healthy(self) -> bool:
        import httpx

        return httpx.get(f"{self.url}/-/ready", timeout=3).status_code == 200

    def alerts(self) -> list[dict[str, Any]]:
        import httpx

        return httpx.get(f"{self.url}/api/v2/alerts", timeout=10).json()
