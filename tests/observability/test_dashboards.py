"""Dashboards: valid JSON in sync with their source, every panel reads through a datasource
variable that defaults to a datasource the monitoring role provisions, every PromQL expression
parses (promtool), every LogQL query selects only the labels Alloy promotes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from common import (
    MONITORING,
    PROVISIONED_DATASOURCES,
    contract_metrics,
    dashboards,
    panels,
    substitute_grafana_vars,
)
from testbed.prometheus import promtool

REQUIRED = {"service-overview", "event-processing", "websocket", "reminders", "logs"}
LOKI_LABELS = {"namespace", "service", "level"}


def test_required_dashboards_exist_and_the_role_ships_them() -> None:
    assert set(dashboards()) >= REQUIRED
    shipped = yaml.safe_load((MONITORING / "vars" / "main.yml").read_text())["_monitoring_dashboards"]
    assert set(shipped) == set(dashboards())


def test_role_provisions_the_datasources_with_fixed_uids() -> None:
    vars_ = yaml.safe_load((MONITORING / "vars" / "main.yml").read_text())
    assert vars_["_monitoring_prometheus_uid"] == "todo-prometheus"
    assert vars_["_monitoring_loki_uid"] == "todo-loki"
    template = (MONITORING / "templates" / "datasources-configmap.yml.j2").read_text()
    assert re.search(r"uid: \{\{ _monitoring_prometheus_uid \}\}\s+type: prometheus", template)
    assert re.search(r"uid: \{\{ _monitoring_loki_uid \}\}\s+type: loki", template)


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_every_panel_uses_a_datasource_variable_of_a_provisioned_datasource(name: str) -> None:
    board = dashboards()[name]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert board["uid"].startswith("todo-") and board["refresh"] == "30s"
    for panel in panels(board):
        refs = [panel["datasource"]] + [t["datasource"] for t in panel["targets"] if "datasource" in t]
        assert panel["targets"], f"{name}: panel {panel['title']!r} has no query"
        for ref in refs:
            m = re.fullmatch(r"\$\{(\w+)\}", ref["uid"])
            assert m, f"{name}: panel {panel['title']!r} hard-codes datasource {ref['uid']!r}"
            var = variables[m.group(1)]
            assert var["type"] == "datasource" and var["query"] == ref["type"]
            default_uid = var["current"]["value"]
            assert PROVISIONED_DATASOURCES.get(default_uid) == ref["type"], (
                f"{name}: variable ${var['name']} defaults to {default_uid!r}, not a provisioned "
                f"{ref['type']} datasource"
            )
    for var in variables.values():
        if var["type"] == "query":
            assert re.fullmatch(r"\$\{\w+\}", var["datasource"]["uid"]), var["name"]


def _promql() -> list[tuple[str, str, str]]:
    out = []
    for name, board in dashboards().items():
        for panel in panels(board):
            if panel["datasource"]["type"] == "prometheus":
                out.extend((name, panel["title"], t["expr"]) for t in panel["targets"])
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                m = re.fullmatch(r"label_values\((.*),\s*\w+\)", var["query"]["query"])
                assert m, var["query"]
                out.append((name, f"variable {var['name']}", m.group(1)))
    return out


def test_every_promql_expression_parses(tmp_path: Path) -> None:
    exprs = _promql()
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:expr_{i}", "expr": substitute_grafana_vars(expr)}
                    for i, (_, _, expr) in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(exprs)} rules found" in result.stdout


def test_dashboards_only_use_contract_metrics() -> None:
    """A typo in a metric name would give an empty panel; the contract is the list of names."""
    known = set(contract_metrics())
    for _, title, expr in _promql():
        for metric in re.findall(r"\b(todo_[a-z0-9_]+?)(?:_bucket|_sum|_count)?\b(?=[{\[)\s])", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            assert metric in known or base in known, f"{title}: {metric} is not in docs/contracts.md"


def _logql() -> list[tuple[str, str]]:
    return [
        (panel["title"], t["expr"])
        for board in dashboards().values()
        for panel in panels(board)
        if panel["datasource"]["type"] == "loki"
        for t in panel["targets"]
    ]


def check_logql(query: str) -> list[str]:
    """Structural check of a LogQL query against what our Loki holds (no Loki binary here)."""
    problems = []
    if query.count("(") != query.count(")") or query.count("{") != query.count("}"):
        problems.append("unbalanced brackets")
    selectors = re.findall(r"\{([^{}]*)\}", query)
    if not selectors:
        problems.append("no stream selector")
    for sel in selectors:
        matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', sel)
        if not matchers or not any(op in {"=", "=~"} for _, op, _ in matchers):
            problems.append(f"selector {{{sel}}} needs a positive matcher")
        labels = {label for label, _, _ in matchers}
        if labels - LOKI_LABELS:
            problems.append(f"selector uses labels Alloy does not promote: {sorted(labels - LOKI_LABELS)}")
    pipeline = re.split(r"\s(?=\|[=~ ]|!=|!~)", query.split("}", 1)[-1])
    for stage in (s.strip() for s in pipeline[1:]):
        if not re.match(
            r'(\|=|!=|\|~|!~)\s*"|\|\s*(json|logfmt|line_format|label_format)\b'
            r'|\|\s*\w+\s*(==|=~|!=|!~|>=|<=|=|>|<)\s*("|\d)',
            stage,
        ):
            problems.append(f"unknown pipeline stage {stage!r}")
    return problems


@pytest.mark.parametrize(("title", "query"), _logql(), ids=[t for t, _ in _logql()])
def test_logql_queries_select_only_promoted_labels(title: str, query: str) -> None:
    assert check_logql(query) == []


def test_logql_check_catches_an_id_used_as_label() -> None:
    assert check_logql('{namespace="todo", request_id="abc"}')
    assert check_logql('{namespace="todo"')


def test_logql_check_knows_the_pipeline_stages() -> None:
    assert check_logql('{namespace="todo"} |= "x" | json | status >= 400 | request_id="a"') == []
    assert check_logql('{namespace="todo"} | frobnicate') != []
