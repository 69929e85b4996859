"""Shared paths and helpers of the observability tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "roles" / "monitoring"
LOGGING = ROOT / "roles" / "logging"
RULES_DIR = MONITORING / "files" / "rules"
DASHBOARDS_DIR = MONITORING / "files" / "dashboards"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
CONTRACTS = ROOT / "docs" / "contracts.md"
LOG_SCHEMA = ROOT / "docs" / "log-line.schema.json"
SERVICES = ["backend", "audit", "recurring-task", "notification", "sync"]
PROVISIONED_DATASOURCES = {"todo-prometheus": "prometheus", "todo-loki": "loki"}


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.rules.yml"))


def alerts() -> list[dict]:
    return [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def dashboards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def panels(board: dict) -> list[dict]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return [p for p in out if p.get("type") != "row"]


def markdown_anchors(text: str) -> set[str]:
    """GitHub-style anchors of the headings of a Markdown document."""
    anchors = set()
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m and not in_code:
            title = re.sub(r"[`*_]", "", m.group(1)).strip().lower()
            slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
            anchors.add(slug)
    return anchors


def substitute_grafana_vars(expr: str, namespace: str = "todo", window: str = "5m") -> str:
    """Replace dashboard variables by concrete values so Prometheus can run the query."""
    return (
        expr.replace("$__rate_interval", window)
        .replace("$__interval", window)
        .replace("$__auto", window)
        .replace("$namespace", namespace)
        .replace("$service", ".*")
    )


def contract_metrics() -> dict[str, tuple[str, list[str]]]:
    """{metric: (type, [labels])} from the Metrics table of docs/contracts.md."""
    metrics = {}
    for line in CONTRACTS.read_text().splitlines():
        m = re.match(r"^\|\s*`(todo_[a-z0-9_]+)`\s*\|\s*(\w+)\s*\|\s*(.*?)\s*\|\s*$", line)
        if m:
            # `outcome` (`processed`, ...) lists values in brackets: keep the label names only
            labels = re.sub(r"\([^)]*\)", "", m.group(3))
            metrics[m.group(1)] = (m.group(2), re.findall(r"`([a-z_]+)`", labels))
    return metrics
