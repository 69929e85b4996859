"""Prometheus of the test bed scrapes a real target; promtool accepts good rules and rejects bad ones."""

import random
import textwrap
from wsgiref.simple_server import make_server

import pytest
from prometheus_client import CollectorRegistry, Gauge, make_wsgi_app
from testbed.core import ComponentError, free_port
from testbed.prometheus import promtool

pytestmark = pytest.mark.testbed


@pytest.fixture
def metrics_target():
    registry = CollectorRegistry()
    gauge = Gauge("testbed_smoke_value", "A value the smoke test sets", registry=registry)
    value = round(random.uniform(1, 1000), 3)
    gauge.set(value)
    port = free_port()
    server = make_server("127.0.0.1", port, make_wsgi_app(registry))
    import threading

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{port}", value
    server.shutdown()


def test_scrape_and_instant_query(prometheus, metrics_target):
    target, value = metrics_target
    previous = list(prometheus.jobs)
    prometheus.set_scrape_config(
        [*previous, {"job_name": "smoke", "scrape_interval": "1s", "static_configs": [{"targets": [target]}]}]
    )
    try:
        result = prometheus.wait_for(f'testbed_smoke_value{{job="smoke",instance="{target}"}}', timeout=60)
    finally:
        prometheus.set_scrape_config(previous)
    assert len(result) == 1
    assert float(result[0]["value"][1]) == value


def test_reload_rejects_a_broken_config(prometheus):
    previous = list(prometheus.jobs)
    with pytest.raises(ValueError, match="job_name"):
        prometheus.set_scrape_config([{"static_configs": []}])
    broken = {"job_name": "broken", "scrape_interval": "not-a-duration", "static_configs": []}
    try:
        with pytest.raises(ComponentError, match="rejected its config"):
            prometheus.set_scrape_config([*previous, broken])
    finally:
        prometheus.set_scrape_config(previous)
    assert prometheus.query("vector(7)")[0]["value"][1] == "7"


def test_promtool_checks_rules(tmp_path):
    good = tmp_path / "good.rules.yml"
    good.write_text(
        textwrap.dedent("""\
        groups:
          - name: smoke
            rules:
              - alert: TargetDown
                expr: up == 0
                for: 1m
                labels: {severity: warning}
                annotations: {summary: "{{ $labels.instance }} is down"}
        """)
    )
    bad = tmp_path / "bad.rules.yml"
    bad.write_text(
        textwrap.dedent("""\
        groups:
          - name: smoke
            rules:
              - alert: Broken
                expr: rate(http_requests_total[5m]
        """)
    )
    ok = promtool("check", "rules", str(good))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "SUCCESS: 1 rules found" in ok.stdout
    broken = promtool("check", "rules", str(bad))
    assert broken.returncode != 0
    assert "Broken" in broken.stdout + broken.stderr or "parse error" in broken.stdout + broken.stderr
