"""Alert delivery end to end: a rule of the monitoring role fires in the test bed's Prometheus, goes
to a real Alertmanager (v0.34.0, the version kube-prometheus-stack 88.5.3 deploys, built from the
Go proxy) running the configuration the monitoring role renders (its Helm values merged over the
chart's defaults, as Helm does, and the receivers' Secret as the operator mounts it), and reaches
a webhook receiver - a small HTTP server of this test - with the alert's runbook link.

The metric the rule reads (todo_events_dead_lettered_total) is served by the same small server,
so that TodoDeadLetters fires without a poison event: what is tested is the delivery.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from common import ROOT
from testbed.alertmanager import Alertmanager
from testbed.core import free_port
from testbed.polling import eventually
from testbed.prometheus import Prometheus

pytestmark = pytest.mark.testbed

HERE = Path(__file__).parent
RUNBOOK_BASE = "https://docs.example.test/todo-platform/"
WEBHOOK_TOKEN = "sink-token-not-real"
CHART = "kube-prometheus-stack-88.5.3.tgz"


class AlertingPrometheus(Prometheus):
    """The test bed's Prometheus with an Alertmanager to send to (a directory of its own, so the
    session's shared Prometheus keeps its configuration)."""

    name = "prometheus-alerting"

    def __init__(self, run: Any, alertmanager: str) -> None:
        super().__init__(run, scrape_interval="1s")
        self.alertmanager = alertmanager

    def _render(self) -> str:
        config = yaml.safe_load(super()._render())
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [self.alertmanager]}]}]}
        return yaml.safe_dump(config, sort_keys=False)


class Sink(BaseHTTPRequestHandler):
    """GET /metrics: one dead-lettered event more per scrape; POST /hook: a notification."""

    received: list[dict[str, Any]] = []
    scrapes = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        Sink.scrapes += 1
        body = (
            "# TYPE todo_events_dead_lettered_total counter\n"
            f'todo_events_dead_lettered_total{{service="audit",topic="task-events"}} {Sink.scrapes - 1}\n'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Sink.received.append({"path": self.path, "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def helm_merge(defaults: Any, values: Any) -> Any:
    """Helm's coalescing of user values over a chart's defaults: maps merge, the rest replaces."""
    if isinstance(defaults, dict) and isinstance(values, dict):
        return {
            k: helm_merge(defaults.get(k), values[k]) if k in values else defaults[k]
            for k in {**defaults, **values}
        }
    return values


def chart_alertmanager_defaults() -> dict:
    from testbed.kube import upstream_data_dir

    # found as every test finds it (TODO_PLATFORM_TEST_DATA, ../shared, or beside the origin clone)
    archive = upstream_data_dir() / "charts" / CHART
    assert archive.is_file(), f"test data missing: {archive} (set TODO_PLATFORM_TEST_DATA)"
    with tarfile.open(archive) as tar:
        values = yaml.safe_load(tar.extractfile("kube-prometheus-stack/values.yaml").read())
    return values["alertmanager"]["config"]


def render_role(out: Path, receivers: list[dict]) -> None:
    settings = out / "settings.yml"
    settings.write_text(
        yaml.safe_dump(
            {
                "monitoring_runbook_base_url": RUNBOOK_BASE,
                "monitoring_alert_group_wait": "1s",
                "monitoring_alert_receivers": receivers,
            }
        )
    )
    playbook = Path(sys.executable).with_name("ansible-playbook")
    proc = subprocess.run(
        [str(playbook), str(HERE / "render_alerting.yml"), "-e", f"@{settings}", "-e", f"out={out}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections")},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert WEBHOOK_TOKEN not in proc.stdout + proc.stderr, "a receiver credential was logged"


def test_a_firing_rule_reaches_the_webhook_receiver_with_its_runbook_link(testbed_run, tmp_path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink = f"127.0.0.1:{server.server_port}"
    render_role(
        tmp_path,
        [
            {
                "name": "oncall-hook",
                "type": "webhook",
                "url": f"http://{sink}/hook?token={WEBHOOK_TOKEN}",
            },
            # a receiver the alert does not match: it must not get the webhook's notification
            {
                "name": "pager",
                "type": "webhook",
                "url": f"http://{sink}/pager",
                "matchers": ['severity = "critical"'],
            },
        ],
    )
    values = yaml.safe_load((tmp_path / "monitoring-values.yml").read_text())
    assert values["alertmanager"]["alertmanagerSpec"]["secrets"] == ["alertmanager-receivers"]
    assert WEBHOOK_TOKEN not in json.dumps(values), "a receiver credential is in the Helm values"
    config = helm_merge(chart_alertmanager_defaults(), values["alertmanager"]["config"])

    alertmanager = Alertmanager(testbed_run, yaml.safe_dump(config))
    alertmanager.start()
    prometheus = AlertingPrometheus(testbed_run, f"127.0.0.1:{alertmanager.port}")
    try:
        prometheus.start()
        prometheus.set_scrape_config(
            [
                {
                    "job_name": "audit",
                    "static_configs": [{"targets": [sink], "labels": {"namespace": "todo"}}],
                }
            ],
            rule_files=[str(tmp_path / "todo-platform.rules.yml")],
        )

        def notified() -> bool:
            assert [r for r in Sink.received if r["path"].startswith("/hook")], (
                f"Prometheus alerts: {prometheus.query('ALERTS')}, "
                f"Alertmanager alerts: {alertmanager.alerts()}; logs {alertmanager.log_file}"
            )
            return True

        eventually(notified, "a notification on the hook", within=90, interval=0.5)
    finally:
        prometheus.stop()
        alertmanager.stop()
        server.shutdown()
    (hook,) = [r for r in Sink.received if r["path"].startswith("/hook")][:1]
    assert hook["path"] == f"/hook?token={WEBHOOK_TOKEN}"  # the URL came from the Secret's file
    assert hook["body"]["receiver"] == "oncall-hook"
    (alert,) = [a for a in hook["body"]["alerts"] if a["labels"]["alertname"] == "TodoDeadLetters"]
    assert alert["status"] == "firing"
    assert alert["labels"] == {
        **alert["labels"],
        "service": "audit",
        "topic": "task-events",
        "severity": "warning",
    }
    assert alert["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}docs/runbooks.md#tododeadletters"
    assert not [r for r in Sink.received if r["path"] == "/pager"], (
        "a warning reached the critical-only receiver"
    )
