"""Source of the Grafana dashboards beside it (roles/monitoring/files/dashboards/*.json).

After editing, run ``python roles/monitoring/files/dashboards/build.py`` to rewrite the JSON;
``--check`` only reports JSON that differs from this source (tests/unit/test_dashboards_current.py
runs it in the unit stage). Every query goes through a datasource variable (``${datasource}`` for
Prometheus, ``${loki}`` for Loki) whose default is the fixed uid of a datasource the monitoring
role provisions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent

PROMETHEUS_UID = "todo-prometheus"
LOKI_UID = "todo-loki"
SERVICES = "backend|audit|recurring-task|notification|sync"
PROM = {"type": "prometheus", "uid": "${datasource}"}
LOKI = {"type": "loki", "uid": "${loki}"}
# Selector of the five services' own targets, narrowed by the dashboard variables.
APP = 'namespace="$namespace", service=~"$service"'
RI = "$__rate_interval"


def datasource_var(name: str, kind: str, uid: str, label: str) -> dict:
    return {
        "name": name,
        "label": label,
        "type": "datasource",
        "query": kind,
        "current": {"text": label, "value": uid},
        "hide": 0,
        "refresh": 1,
        "regex": "",
    }


def query_var(name: str, query: str, *, multi: bool) -> dict:
    var = {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": PROM,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-var"},
        "refresh": 2,
        "sort": 1,
        "hide": 0,
        "multi": multi,
        "includeAll": multi,
    }
    if multi:
        var["allValue"] = ".*"
        var["current"] = {"text": "All", "value": "$__all"}
    else:
        var["current"] = {"text": "todo", "value": "todo"}
    return var


def textbox_var(name: str, label: str) -> dict:
    return {
        "name": name,
        "label": label,
        "type": "textbox",
        "query": "",
        "current": {"text": "", "value": ""},
    }


NAMESPACE_VAR = query_var("namespace", f'label_values(up{{job=~"{SERVICES}"}}, namespace)', multi=False)
SERVICE_VAR = query_var(
    "service", f'label_values(up{{job=~"{SERVICES}", namespace="$namespace"}}, service)', multi=True
)


class Board:
    def __init__(self, uid: str, title: str, description: str) -> None:
        self.uid, self.title, self.description = uid, title, description
        self.panels: list[dict] = []
        self.y = 0
        self.x = 0
        self.row_h = 0

    def row(self, title: str) -> None:
        if self.x:
            self.y += self.row_h
            self.x, self.row_h = 0, 0
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def panel(
        self,
        title: str,
        targets: list[tuple[str, str]],
        *,
        unit: str = "short",
        kind: str = "timeseries",
        width: int = 12,
        height: int = 8,
        loki: bool = False,
        description: str = "",
    ) -> None:
        if self.x + width > 24:
            self.y += self.row_h
            self.x, self.row_h = 0, 0
        ds = LOKI if loki else PROM
        panel = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": ds,
            "gridPos": {"h": height, "w": width, "x": self.x, "y": self.y},
            "targets": [
                {"refId": chr(ord("A") + i), "datasource": ds, "expr": expr, "legendFormat": legend}
                | ({"queryType": "range"} if loki else {})
                for i, (expr, legend) in enumerate(targets)
            ],
        }
        if kind != "logs":
            panel["fieldConfig"] = {"defaults": {"unit": unit}, "overrides": []}
        else:
            panel["options"] = {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending"}
        self.panels.append(panel)
        self.x += width
        self.row_h = max(self.row_h, height)

    def render(self, variables: list[dict]) -> dict:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["todo-platform"],
            "timezone": "utc",
            "editable": True,
            "graphTooltip": 1,
            "refresh": "30s",
            "schemaVersion": 39,
            "version": 1,
            "time": {"from": "now-1h", "to": "now"},
            "annotations": {"list": []},
            "links": [],
            "templating": {"list": variables},
            "panels": self.panels,
        }


def prom_vars() -> list[dict]:
    return [
        datasource_var("datasource", "prometheus", PROMETHEUS_UID, "Prometheus"),
        NAMESPACE_VAR,
        SERVICE_VAR,
    ]


def p95(metric: str, by: str, selector: str = APP) -> str:
    return f"histogram_quantile(0.95, sum by ({by}, le) (rate({metric}_bucket{{{selector}}}[{RI}])))"


def service_overview() -> dict:
    b = Board(
        "todo-service-overview",
        "Todo / Service Overview",
        "Traffic, errors, latency and saturation per service.",
    )
    b.row("Availability")
    b.panel(
        "Instances up",
        [(f'sum by (service) (up{{job=~"{SERVICES}", {APP}}})', "{{service}}")],
        width=8,
    )
    b.panel(
        "Dapr sidecars up",
        [(f'sum by (service) (up{{job="dapr-sidecars", {APP}}})', "{{service}}")],
        width=8,
    )
    b.panel(
        "Requests in flight",
        [(f"sum by (service) (todo_http_requests_in_flight{{{APP}}})", "{{service}}")],
        width=8,
    )
    b.row("HTTP")
    b.panel(
        "Request rate",
        [(f"sum by (service) (rate(todo_http_requests_total{{{APP}}}[{RI}]))", "{{service}}")],
        unit="reqps",
    )
    b.panel(
        "5xx ratio",
        [
            (
                # "or … * 0" keeps a 0 line for services without any 5xx instead of "No data".
                f'(sum by (service) (rate(todo_http_requests_total{{{APP}, status=~"5.."}}[{RI}]))'
                f" or sum by (service) (rate(todo_http_requests_total{{{APP}}}[{RI}])) * 0)"
                f" / sum by (service) (rate(todo_http_requests_total{{{APP}}}[{RI}]))",
                "{{service}}",
            )
        ],
        unit="percentunit",
    )
    b.panel(
        "p95 latency per service",
        [(p95("todo_http_request_duration_seconds", "service"), "{{service}}")],
        unit="s",
    )
    b.panel(
        "p95 latency per route",
        [
            (
                p95("todo_http_request_duration_seconds", "service, route, method"),
                "{{service}} {{method}} {{route}}",
            )
        ],
        unit="s",
    )
    b.panel(
        "Responses by status",
        [
            (
                f"sum by (service, status) (rate(todo_http_requests_total{{{APP}}}[{RI}]))",
                "{{service}} {{status}}",
            )
        ],
        unit="reqps",
        width=24,
    )
    b.row("Process")
    b.panel(
        "CPU",
        [
            (
                f'sum by (service) (rate(process_cpu_seconds_total{{job=~"{SERVICES}", {APP}}}[{RI}]))',
                "{{service}}",
            )
        ],
        unit="percentunit",
    )
    b.panel(
        "Resident memory",
        [
            (
                f'sum by (service) (process_resident_memory_bytes{{job=~"{SERVICES}", {APP}}})',
                "{{service}}",
            )
        ],
        unit="bytes",
    )
    b.panel(
        "Dapr sidecar HTTP requests",
        [
            (
                f"sum by (service) (rate(dapr_http_server_request_count{{{APP}}}[{RI}]))",
                "{{service}}",
            )
        ],
        unit="reqps",
        width=24,
        description="Requests the app made to its daprd (publish, service invocation).",
    )
    return b.render(prom_vars())


def event_processing() -> dict:
    b = Board(
        "todo-event-processing",
        "Todo / Event Processing",
        "From the outbox through Dapr and Kafka to the consumers; dead letters and lag.",
    )
    b.row("Publishing (backend outbox -> Dapr -> Kafka)")
    b.panel(
        "Events published per topic",
        [
            (
                f"sum by (topic, type) (rate(todo_events_published_total{{{APP}}}[{RI}]))",
                "{{topic}} {{type}}",
            )
        ],
        unit="ops",
    )
    b.panel(
        "Publish failures per topic",
        [
            (
                f"sum by (topic, type) (rate(todo_events_publish_failed_total{{{APP}}}[{RI}]))",
                "{{topic}} {{type}}",
            )
        ],
        unit="ops",
    )
    b.panel(
        "Outbox backlog",
        [(f"sum by (service) (todo_outbox_backlog{{{APP}}})", "{{service}}")],
        width=8,
    )
    b.panel(
        "Oldest outbox event",
        [(f"max by (service) (todo_outbox_oldest_age_seconds{{{APP}}})", "{{service}}")],
        unit="s",
        width=8,
    )
    # A bulk publish (the outbox relay's) is one call for many events; Dapr counts it apart.
    egress = '__name__=~"dapr_component_pubsub_egress_count|dapr_component_pubsub_egress_bulk_count"'
    b.panel(
        "Dapr publish calls (sidecar egress)",
        [
            (
                f"sum by (service, topic, success) (rate({{{egress}, {APP}}}[{RI}]))",
                "{{service}} {{topic}} success={{success}}",
            )
        ],
        unit="ops",
        width=8,
    )
    b.row("Consuming")
    b.panel(
        "Events consumed per topic and outcome",
        [
            (
                f"sum by (service, topic, outcome) (rate(todo_events_consumed_total{{{APP}}}[{RI}]))",
                "{{service}} {{topic}} {{outcome}}",
            )
        ],
        unit="ops",
    )
    # Events delivered one per request, and events delivered in bulk-subscribe requests.
    ingress = '__name__=~"dapr_component_pubsub_ingress_count|dapr_component_pubsub_ingress_bulk_event_count"'
    b.panel(
        "Dapr deliveries (sidecar ingress)",
        [
            (
                f"sum by (service, topic) (rate({{{ingress}, {APP}}}[{RI}]))",
                "{{service}} {{topic}}",
            )
        ],
        unit="ops",
    )
    b.panel(
        "Processing time p95",
        [(p95("todo_event_processing_seconds", "service, topic"), "{{service}} {{topic}}")],
        unit="s",
    )
    b.panel(
        "End-to-end latency p95 (event time -> processed)",
        [(p95("todo_event_end_to_end_seconds", "service, topic"), "{{service}} {{topic}}")],
        unit="s",
    )
    b.row("Backpressure and failures")
    b.panel(
        "Consumer lag",
        [
            (
                'sum by (consumergroup, topic) (kafka_consumergroup_lag{topic!~".*-dlq"} >= 0)',
                "{{consumergroup}} {{topic}}",
            )
        ],
        description="From kafka_exporter; -1 (nothing committed yet) is left out.",
    )
    b.panel(
        "Dead-lettered events",
        [
            (
                f"sum by (service, topic) (increase(todo_events_dead_lettered_total{{{APP}}}[{RI}]))",
                "{{service}} {{topic}}",
            )
        ],
    )
    b.panel(
        "Messages in the dead-letter topics",
        [('sum by (topic) (kafka_topic_partition_current_offset{topic=~".*-dlq"})', "{{topic}}")],
        description="High-water marks of task-events-dlq and reminders-dlq (kafka_exporter).",
        width=24,
    )
    return b.render(prom_vars())


def websocket() -> dict:
    b = Board(
        "todo-websocket",
        "Todo / WebSocket",
        "Live connections of the sync service and delivery of pushes.",
    )
    b.panel(
        "Open connections",
        [(f"sum by (pod) (todo_websocket_connections{{{APP}}})", "{{pod}}")],
        width=8,
    )
    b.panel(
        "Messages pushed by type",
        [(f"sum by (type) (rate(todo_websocket_messages_sent_total{{{APP}}}[{RI}]))", "{{type}}")],
        unit="ops",
        width=16,
    )
    b.panel(
        "Delivery latency (event -> socket)",
        [
            (p95("todo_websocket_delivery_seconds", "service"), "p95"),
            (
                f"histogram_quantile(0.50, sum by (service, le) "
                f"(rate(todo_websocket_delivery_seconds_bucket{{{APP}}}[{RI}])))",
                "p50",
            ),
        ],
        unit="s",
    )
    b.panel(
        "Disconnects by reason",
        [
            (
                f"sum by (reason) (rate(todo_websocket_disconnects_total{{{APP}}}[{RI}]))",
                "{{reason}}",
            )
        ],
        unit="ops",
    )
    return b.render(prom_vars())


def reminders() -> dict:
    b = Board("todo-reminders", "Todo / Reminders", "Reminder schedule of the notification service.")
    b.panel("Pending reminders", [(f"sum (todo_reminders_pending{{{APP}}})", "pending")], width=8)
    b.panel(
        "Scheduled and cancelled",
        [
            (f"sum (rate(todo_reminders_scheduled_total{{{APP}}}[{RI}]))", "scheduled"),
            (f"sum (rate(todo_reminders_cancelled_total{{{APP}}}[{RI}]))", "cancelled"),
        ],
        unit="ops",
        width=16,
    )
    b.panel(
        "Fired, on time and late",
        [(f"sum by (timing) (rate(todo_reminders_fired_total{{{APP}}}[{RI}]))", "{{timing}}")],
        unit="ops",
    )
    b.panel(
        "Fire delay after due time",
        [
            (p95("todo_reminder_fire_delay_seconds", "service"), "p95"),
            (
                f"histogram_quantile(0.50, sum by (service, le) "
                f"(rate(todo_reminder_fire_delay_seconds_bucket{{{APP}}}[{RI}])))",
                "p50",
            ),
        ],
        unit="s",
    )
    b.panel(
        "Audit writes by event type",
        [(f"sum by (type) (rate(todo_audit_writes_total{{{APP}}}[{RI}]))", "{{type}}")],
        unit="ops",
        width=24,
    )
    return b.render(prom_vars())


# Saved LogQL queries (also listed in docs/observability.md). Labels: namespace, service, level;
# request_id and trace_id are structured metadata, the other fields stay in the JSON line.
# The |= text of each is (the start of) a message the services write; test_logs.py checks that.
SAVED_QUERIES = {
    "Unhandled errors (HTTP 500)": '{namespace="$namespace"} |= "unhandled error" | json',
    "Event publish failed": '{namespace="$namespace"} |= "event publish failed" | json',
    "Event handling failed (redelivered)": '{namespace="$namespace"} |= "event handling failed" | json',
    "Everything for one request_id": '{namespace="$namespace"} | request_id="$request_id"',
    "Everything for one trace_id": '{namespace="$namespace"} | trace_id="$trace_id"',
}


def logs() -> dict:
    b = Board("todo-logs", "Todo / Logs", "Loki: volume, errors and the saved queries of the runbooks.")
    sel = '{namespace="$namespace", service=~"$service"}'
    b.panel(
        "Log lines by level",
        [(f"sum by (level) (count_over_time({sel} [$__auto]))", "{{level}}")],
        loki=True,
        width=12,
    )
    b.panel(
        "Errors by service",
        [
            (
                "sum by (service) (count_over_time("
                '{namespace="$namespace", level=~"error|critical"} [$__auto]))',
                "{{service}}",
            )
        ],
        loki=True,
        width=12,
    )
    b.panel(
        "Error lines",
        [('{namespace="$namespace", service=~"$service", level=~"error|critical"}', "")],
        kind="logs",
        loki=True,
        width=24,
        height=10,
    )
    for title, query in SAVED_QUERIES.items():
        b.panel(title, [(query, "")], kind="logs", loki=True, width=12, height=10)
    variables = [
        datasource_var("datasource", "prometheus", PROMETHEUS_UID, "Prometheus"),
        datasource_var("loki", "loki", LOKI_UID, "Loki"),
        NAMESPACE_VAR,
        SERVICE_VAR,
        textbox_var("request_id", "request_id"),
        textbox_var("trace_id", "trace_id"),
    ]
    return b.render(variables)


BUILDERS = {
    "service-overview": service_overview,
    "event-processing": event_processing,
    "websocket": websocket,
    "reminders": reminders,
    "logs": logs,
}


def render_all() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in BUILDERS.items()}


def stale() -> list[str]:
    """The dashboards whose committed JSON differs from this source, and JSON without a source."""
    built = render_all()
    changed = [
        f"{name}.json"
        for name, text in built.items()
        if not (OUT / f"{name}.json").is_file() or (OUT / f"{name}.json").read_text() != text
    ]
    orphans = [p.name for p in sorted(OUT.glob("*.json")) if p.stem not in built]
    return changed + orphans


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        problems = stale()
        for name in problems:
            print(f"{OUT / name} differs from its source: run python {Path(__file__)}", file=sys.stderr)
        return 1 if problems else 0
    if argv:
        print(f"usage: {Path(__file__).name} [--check]", file=sys.stderr)
        return 2
    for name, text in render_all().items():
        (OUT / f"{name}.json").write_text(text)
        print(f"wrote {OUT / (name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
