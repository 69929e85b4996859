"""The backup and restore Jobs may reach PostgreSQL under the apps role's NetworkPolicies.

The apps namespace denies all traffic by default; only pods whose component label is in the
database-egress (and, in-cluster, postgres-ingress) selectors reach the database. A Job whose pod
labels fall outside them times out on every cluster that enforces policies, and kwok or a kind
node without a policy engine never shows it, so the labels are checked against the rendered
policies here.
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _vars(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text())


def _policies(database: str) -> dict[str, dict]:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 (YAML, not HTML)
    env.filters["to_json"] = json.dumps
    template = env.from_string((ROOT / "roles/apps/templates/networkpolicies.yml.j2").read_text())
    apps_vars = _vars("roles/apps/vars/main.yml")
    text = template.render(
        apps_namespace="todo",
        apps_dapr_namespace="dapr-system",
        apps_kafka_namespace="kafka",
        apps_monitoring_namespace="monitoring",
        apps_monitoring_scraper_labels=_vars("roles/apps/defaults/main.yml")[
            "apps_monitoring_scraper_labels"
        ],
        apps_kafka_cidr="",
        apps_kafka_ports=[9092],
        apps_database=database,
        apps_database_cidr="10.0.0.0/16",
        apps_database_port=5432,
        apps_ingress_namespaces=[],
        apps_ingress_cidrs=[],
        apps_routes=[],
        apps_smtp_host="",
        apps_smtp_port=587,
        _apps_labels=apps_vars["_apps_labels"],
        _apps_database_client_components=apps_vars["_apps_database_client_components"],
    )
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all(text) if d}


def _selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def _backup_pod_labels() -> dict[str, dict]:
    labels = _vars("roles/backup/vars/main.yml")["_backup_labels"]
    # restore-job.yml.j2 overrides only the name
    return {"backup": labels, "restore": {**labels, "app.kubernetes.io/name": "todo-db-restore"}}


@pytest.mark.parametrize("database", ["incluster", "external"])
@pytest.mark.parametrize("job", ["backup", "restore"])
def test_backup_jobs_may_reach_the_database(database: str, job: str) -> None:
    labels = _backup_pod_labels()[job]
    policies = _policies(database)
    egress = policies["database-egress"]["spec"]["podSelector"]
    assert _selects(egress, labels), f"the {job} Job's pods {labels} have no egress to the database"
    if database == "incluster":
        ingress = policies["postgres-ingress"]["spec"]["ingress"][0]["from"][0]["podSelector"]
        assert _selects(ingress, labels), f"PostgreSQL does not admit the {job} Job's pods {labels}"
