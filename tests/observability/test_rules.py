"""Alert rules: promtool accepts them, each alert fires and stays silent as its unit test says,
and every runbook link points at a section of docs/runbooks.md that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from common import RULES_DIR, RUNBOOKS, alerts, markdown_anchors, rule_files
from testbed.prometheus import promtool

HERE = Path(__file__).parent
REQUIRED = {
    "TodoServiceDown",
    "TodoHigh5xxRatio",
    "TodoHighLatencyP95",
    "TodoConsumerLagHigh",
    "TodoOutboxStale",
    "TodoDeadLetters",
    "TodoRemindersLate",
    "TodoPodRestarting",
    "TodoVolumeFillingUp",
}


def test_rule_files_pass_promtool_check() -> None:
    files = rule_files()
    assert files, f"no *.rules.yml in {RULES_DIR}"
    result = promtool("check", "rules", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_and_stays_silent_as_tested() -> None:
    result = promtool("test", "rules", str(HERE / "rules_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    tests = yaml.safe_load((HERE / "rules_test.yml").read_text())["tests"]
    fired = {
        case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case.get("exp_alerts")
    }
    names = {a["alert"] for a in alerts()}
    assert names - fired == set(), "alerts without a firing unit test"


def test_required_alerts_exist() -> None:
    assert {a["alert"] for a in alerts()} >= REQUIRED


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_runbook_url_points_at_an_existing_section(alert: dict) -> None:
    url = alert["annotations"]["runbook_url"]
    path, _, anchor = url.partition("#")
    assert path == "docs/runbooks.md" and anchor, url
    assert anchor in markdown_anchors(RUNBOOKS.read_text()), f"{RUNBOOKS} has no section #{anchor}"
    assert alert["labels"]["severity"] in {"critical", "warning", "info"}


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """Guards the two tests above: a checker that accepts anything would prove nothing."""
    bad = tmp_path / "bad.rules.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum by (job (up)\n")
    assert promtool("check", "rules", str(bad)).returncode != 0


def test_runbooks_name_only_playbooks_that_exist() -> None:
    text = RUNBOOKS.read_text()
    named = set(re.findall(r"playbooks/(?:runbooks/)?[a-z0-9_-]+\.yml", text))
    assert named, "the runbooks name no playbook"
    missing = sorted(p for p in named if not (RUNBOOKS.parents[1] / p).is_file())
    assert missing == []
