"""The alert receivers filter: credentials only as files, clear errors for bad receivers."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.todo.platform.plugins.filter.alert_receivers import (
    alertmanager_config,
    alertmanager_secret_data,
)

RECEIVERS = [
    {
        "name": "mail",
        "type": "email",
        "to": "ops@example.test",
        "from": "am@example.test",
        "smarthost": "smtp.example.test:587",
        "auth_username": "am",
        "auth_password": "pw-not-real",
    },
    {"name": "chat", "type": "slack", "url": "https://hooks.example.test/x"},
    {"name": "teams", "type": "msteams", "url": "https://teams.example.test/x"},
    {
        "name": "pd",
        "type": "pagerduty",
        "routing_key": "key-not-real",
        "matchers": ['severity = "critical"'],
    },
    {"name": "hook", "type": "webhook", "url": "https://hook.example.test/x"},
]


def test_every_type_names_its_credential_by_file_only():
    config = alertmanager_config(RECEIVERS, "/s")
    text = repr(config)
    for secret in (
        "pw-not-real",
        "hooks.example.test",
        "teams.example.test",
        "key-not-real",
        "hook.example.test",
    ):
        assert secret not in text
    by_name = {r["name"]: r for r in config["receivers"]}
    assert by_name["mail"]["email_configs"][0]["auth_password_file"] == "/s/mail-auth-password"
    assert by_name["chat"]["slack_configs"][0]["api_url_file"] == "/s/chat-url"
    assert by_name["teams"]["msteamsv2_configs"][0]["webhook_url_file"] == "/s/teams-url"
    assert by_name["pd"]["pagerduty_configs"][0]["routing_key_file"] == "/s/pd-routing-key"
    assert by_name["hook"]["webhook_configs"][0]["url_file"] == "/s/hook-url"
    assert alertmanager_secret_data(RECEIVERS) == {
        "mail-auth-password": "pw-not-real",
        "chat-url": "https://hooks.example.test/x",
        "teams-url": "https://teams.example.test/x",
        "pd-routing-key": "key-not-real",
        "hook-url": "https://hook.example.test/x",
    }
    pd_route = [r for r in config["route"]["routes"] if r["receiver"] == "pd"]
    assert pd_route == [{"receiver": "pd", "matchers": ['severity = "critical"'], "continue": True}]


@pytest.mark.parametrize(
    ("receiver", "message"),
    [
        ({"name": "x", "type": "sms"}, "type 'sms': one of email"),
        ({"name": "x", "type": "webhook", "url": ""}, "url is required for type webhook (a credential"),
        ({"name": "x", "type": "slack", "url": "u", "chanel": "#a"}, "unknown settings ['chanel']"),
        ({"name": "Bad_Name", "type": "webhook", "url": "u"}, "name: lower-case"),
        ({"name": "x", "type": "email", "to": "a@b", "from": "c@d"}, "smarthost is required"),
        (
            {"name": "x", "type": "webhook", "url": "u", "matchers": "severity=critical"},
            "matchers: a list",
        ),
    ],
)
def test_a_bad_receiver_is_refused_with_what_to_fix(receiver, message):
    with pytest.raises(AnsibleFilterError, match=None) as err:
        alertmanager_config([receiver], "/s")
    assert message in str(err.value)
    assert "receiver" in str(err.value)


def test_a_name_used_twice_is_refused():
    hook = {"name": "x", "type": "webhook", "url": "u"}
    with pytest.raises(AnsibleFilterError, match="used twice"):
        alertmanager_secret_data([hook, hook])
