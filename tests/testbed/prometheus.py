"""Prometheus and promtool from Debian's ``prometheus`` package, run as our own process.

The server gets its own config file, data directory and free port (never Debian's systemd service).
The default scrape interval is 15s; tests that want fresh samples sooner pass ``scrape_interval`` or
set ``TESTBED_PROM_SCRAPE_INTERVAL`` (e.g. ``2s``).  ``set_scrape_config(jobs)`` rewrites the
config and reloads it through ``/-/reload`` (``--web.enable-lifecycle``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from testbed.core import (
    Component,
    ComponentError,
    MissingTool,
    Run,
    apt_install,
    free_port,
    register,
    register_tool,
)

HOW = "install Debian's package as root: apt-get install -y prometheus (gives prometheus and promtool)"


def _find(name: str) -> str | None:
    env = os.environ.get(f"TESTBED_{name.upper()}")
    if env and Path(env).is_file():
        return env
    return shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)


def ensure_tool() -> tuple[str, str]:
    """Paths of prometheus and promtool; installs Debian's package when missing and we are root."""
    prom, tool = _find("prometheus"), _find("promtool")
    if prom and tool:
        return prom, tool
    apt_install("prometheus", "prometheus/promtool", HOW)
    # the package enables a system service on :9090; the test bed never uses it, so stop it
    if shutil.which("systemctl"):
        subprocess.run(["systemctl", "disable", "--now", "prometheus"], capture_output=True, check=False)
    prom, tool = _find("prometheus"), _find("promtool")
    if not (prom and tool):
        raise MissingTool("prometheus/promtool", HOW)
    return prom, tool


register_tool("prometheus", ensure_tool)


def promtool(*args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool (e.g. ``promtool("check", "rules", path)``); never raises on a non-zero exit."""
    _, tool = ensure_tool()
    return subprocess.run([tool, *args], capture_output=True, text=True, input=input_text, check=False)


@register("prometheus", default=True, order=30)
class Prometheus(Component):
    name = "prometheus"
    start_timeout = 60.0

    def __init__(self, run: Run | None = None, scrape_interval: str | None = None) -> None:
        super().__init__(run)
        self.host = "127.0.0.1"
        self.port = 0
        self.scrape_interval = scrape_interval or os.environ.get("TESTBED_PROM_SCRAPE_INTERVAL") or "15s"
        self.jobs: list[dict[str, Any]] = []
        self.rule_files: list[str] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.workdir / "prometheus.yml"

    # -- configuration --------------------------------------------------------------------------
    def _render(self) -> str:
        config: dict[str, Any] = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": self.jobs,
        }
        if self.rule_files:
            config["rule_files"] = self.rule_files
        return yaml.safe_dump(config, sort_keys=False)

    def _write_config(self) -> None:
        tmp = self.config_file.with_suffix(".tmp")
        tmp.write_text(self._render())
        tmp.replace(self.config_file)

    def set_scrape_config(self, jobs: list[dict[str, Any]], rule_files: list[str] | None = None) -> None:
        """Replace all scrape configs (each a dict as in prometheus.yml's ``scrape_configs``) and
        optionally the rule files, then reload; raises if Prometheus rejects the new config."""
        for job in jobs:
            if "job_name" not in job:
                raise ValueError(f"scrape config without job_name: {job!r}")
        self.jobs = [dict(j) for j in jobs]
        if rule_files is not None:
            self.rule_files = [str(p) for p in rule_files]
        self._write_config()
        self.reload()

    def reload(self) -> None:
        import httpx

        resp = httpx.post(f"{self.url}/-/reload", timeout=30)
        if resp.status_code != 200:
            raise ComponentError(f"prometheus rejected its config ({resp.status_code}): {resp.text.strip()}")

    # -- queries ----------------------------------------------------------------------------------
    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; returns ``data.result`` (for vectors: [{"metric": {...}, "value": [t, "v"]}])."""
        import httpx

        resp = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=30)
        body = resp.json()
        if body.get("status") != "success":
            raise ComponentError(f"prometheus query {promql!r} failed: {body.get('error', resp.text)}")
        return body["data"]["result"]

    def wait_for(self, promql: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Poll an instant query until it returns samples (scrapes are periodic)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if result:
                return result
            if time.monotonic() > deadline:
                raise ComponentError(
                    f"no samples for {promql!r} within {timeout:.0f}s; targets: {self.targets()}"
                )
            time.sleep(0.5)

    def targets(self) -> list[dict[str, Any]]:
        import httpx

        body = httpx.get(f"{self.url}/api/v1/targets", timeout=30).json()
        return [
            {k: t.get(k) for k in ("scrapeUrl", "health", "lastError")}
            for t in body.get("data", {}).get("activeTargets", [])
        ]

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        prom, _ = ensure_tool()
        if not self.port:
            self.port = free_port()
        self._write_config()
        self.spawn(
            [
                prom,
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={self.host}:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d",
                "--log.level=info",
            ]
        )
        self.wait_healthy()
        self.started()

    def is_healthy(self) -> bool:
        import httpx

        return httpx.get(f"{self.url}/-/ready", timeout=3).status_code == 200

    def info(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "url": self.url,
            "scrape_interval": self.scrape_interval,
            "config_file": str(self.config_file),
            "jobs": self.jobs,
            "rule_files": self.rule_files,
        }

    def env(self) -> dict[str, str]:
        return {"TESTBED_PROMETHEUS_URL": self.url}

    @classmethod
    def restore(cls, run: Run, info: dict[str, Any]) -> Prometheus:
        comp = cls(run, scrape_interval=info.get("scrape_interval"))
        comp.host, comp.port = info["host"], int(info["port"])
        comp.jobs = list(info.get("jobs", []))
        comp.rule_files = list(info.get("rule_files", []))
        # another session may have changed the scrape configs since: the config file is the truth
        with contextlib.suppress(OSError, yaml.YAMLError, AttributeError):
            current = yaml.safe_load(Path(info["config_file"]).read_text())
            comp.jobs = list(current.get("scrape_configs") or [])
            comp.rule_files = list(current.get("rule_files") or [])
        return comp

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
