# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alertmanager receivers from the inventory: the routing and receivers of Alertmanager's
configuration, and the Secret holding their credentials.

One description of a receiver (``monitoring_alert_receivers``) gives both: the configuration names
each credential by file (``*_file`` options, the Secret mounted by the Alertmanager operator under
``/etc/alertmanager/secrets/<secret>/``), so no credential is ever part of the Helm values.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

#: per type: Alertmanager's list key, settings (required ones True) and credentials (required True)
TYPES = {
    "email": {
        "key": "email_configs",
        "settings": {
            "to": True,
            "from": True,
            "smarthost": True,
            "auth_username": False,
            "require_tls": False,
        },
        "secrets": {"auth_password": False},
    },
    "slack": {"key": "slack_configs", "settings": {"channel": False}, "secrets": {"url": True}},
    # Teams "Workflows" webhooks (the Office 365 connectors behind msteams_configs are retired)
    "msteams": {"key": "msteamsv2_configs", "settings": {}, "secrets": {"url": True}},
    "pagerduty": {"key": "pagerduty_configs", "settings": {}, "secrets": {"routing_key": True}},
    "webhook": {"key": "webhook_configs", "settings": {}, "secrets": {"url": True}},
}
#: the Alertmanager option that reads each credential from a file
SECRET_OPTION = {
    ("email", "auth_password"): "auth_password_file",
    ("slack", "url"): "api_url_file",
    ("msteams", "url"): "webhook_url_file",
    ("pagerduty", "routing_key"): "routing_key_file",
    ("webhook", "url"): "url_file",
}
COMMON = {"name", "type", "matchers", "send_resolved"}
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$")
#: alerts that exist to be silent: the chart's always-firing Watchdog and its InfoInhibitor
SILENT = ['alertname = "Watchdog"', 'alertname = "InfoInhibitor"']
# Each alert's runbook link (its runbook_url annotation, made absolute by the monitoring role)
# in the message of the receivers that format text; webhook and email carry all annotations.
RUNBOOK_TEXT = (
    "{{ range .Alerts }}*{{ .Labels.alertname }}* ({{ .Status }}): {{ .Annotations.summary }}\n"
    "Runbook: {{ .Annotations.runbook_url }}\n{{ end }}"
)


def _fail(receiver, message):
    name = receiver.get("name") if isinstance(receiver, dict) else None
    raise AnsibleFilterError(f"monitoring_alert_receivers: receiver {name!r}: {message}")


def _checked(receivers):
    if not isinstance(receivers, list):
        raise AnsibleFilterError("monitoring_alert_receivers: expected a list of receivers")
    seen = set()
    for receiver in receivers:
        if not isinstance(receiver, dict):
            _fail(receiver, "expected a mapping with name and type")
        name, kind = receiver.get("name"), receiver.get("type")
        if not isinstance(name, str) or not NAME.match(name) or name == "null":
            _fail(receiver, "name: lower-case letters, digits and dashes (not 'null'), at most 42")
        if name in seen:
            _fail(receiver, "the name is used twice")
        seen.add(name)
        if kind not in TYPES:
            _fail(receiver, f"type {kind!r}: one of {', '.join(TYPES)}")
        spec = TYPES[kind]
        unknown = set(receiver) - COMMON - set(spec["settings"]) - set(spec["secrets"])
        if unknown:
            allowed = sorted(COMMON | set(spec["settings"]) | set(spec["secrets"]))
            _fail(receiver, f"unknown settings {sorted(unknown)} for type {kind} (allowed: {allowed})")
        for field, required in {**spec["settings"], **spec["secrets"]}.items():
            value = receiver.get(field)
            if required and (value is None or value == ""):
                hint = (
                    " (a credential: set it from the environment or Vault)"
                    if field in spec["secrets"]
                    else ""
                )
                _fail(receiver, f"{field} is required for type {kind}{hint}")
        matchers = receiver.get("matchers", [])
        if not isinstance(matchers, list) or not all(isinstance(m, str) and m for m in matchers):
            _fail(receiver, "matchers: a list of Alertmanager matchers such as 'severity = \"critical\"'")
    return receivers


def _secret_key(receiver, field):
    return f"{receiver['name']}-{field.replace('_', '-')}"


def alertmanager_secret_data(receivers):
    """The receivers' credentials as the data of one Secret (keys ``<receiver>-<field>``)."""
    data = {}
    for receiver in _checked(receivers):
        for field in TYPES[receiver["type"]]["secrets"]:
            if receiver.get(field):
                data[_secret_key(receiver, field)] = str(receiver[field])
    return data


def _receiver_config(receiver, secret_dir):
    kind = receiver["type"]
    spec = TYPES[kind]
    config = {"send_resolved": bool(receiver.get("send_resolved", True))}
    for field in spec["settings"]:
        if receiver.get(field) not in (None, ""):
            config[field] = receiver[field]
    for field in spec["secrets"]:
        if receiver.get(field):
            config[SECRET_OPTION[(kind, field)]] = f"{secret_dir.rstrip('/')}/{_secret_key(receiver, field)}"
    if kind in ("slack", "msteams"):
        config["text"] = RUNBOOK_TEXT
    if kind == "pagerduty":
        config["links"] = [{"href": "{{ .CommonAnnotations.runbook_url }}", "text": "Runbook"}]
    return {"name": receiver["name"], spec["key"]: [config]}


def alertmanager_config(receivers, secret_dir, group_wait="30s", group_interval="5m", repeat_interval="4h"):
    """The route and receivers of Alertmanager's configuration: every alert goes to each receiver
    whose matchers it meets (all alerts when it has none); Watchdog and InfoInhibitor go nowhere."""
    receivers = _checked(receivers)
    routes = [{"receiver": "null", "matchers": [matcher]} for matcher in SILENT]
    routes += [
        {"receiver": r["name"], "matchers": list(r.get("matchers", [])), "continue": True} for r in receivers
    ]
    return {
        "route": {
            "receiver": "null",
            "group_by": ["alertname", "namespace", "service"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
            "routes": routes,
        },
        "receivers": [{"name": "null"}] + [_receiver_config(r, secret_dir) for r in receivers],
    }


class FilterModule:
    def filters(self):
        return {
            "alertmanager_config": alertmanager_config,
            "alertmanager_secret_data": alertmanager_secret_data,
        }
