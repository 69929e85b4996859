# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""OCI Streaming SASL user names: with an identity domain (four parts) and without (three parts),
the same rules whether the Dapr component builds the name from its parts (dapr_kafka_pubsub) or a
Kafka module receives it ready-made (kafka_topic, kafka_probe, kafka_consumer_lag_info)."""

from __future__ import annotations

import pytest
from ansible_collections.todo.platform.plugins.module_utils import kafka
from ansible_collections.todo.platform.plugins.module_utils.dapr_pubsub import build_resources
from ansible_collections.todo.platform.plugins.module_utils.providers import (
    SettingError,
    oci_streaming_username,
    parse_oci_streaming_username,
)

POOL = "ocid1.streampool.oc1.eu-frankfurt-1.amaaaaexample"
BOOTSTRAP = ["cell-1.streaming.eu-frankfurt-1.oci.oraclecloud.com:9092"]


def component(**section_overrides):
    section = dict(
        tenancy="mytenancy",
        user="todo-streaming",
        stream_pool_id=POOL,
        bootstrap_servers=BOOTSTRAP,
        auth_token="oci-token-value",
    )
    section.update(section_overrides)
    return dict(
        name="pubsub",
        namespace="todo",
        provider="oci_streaming",
        oci_streaming=section,
        consumer_group="{appID}",
        secret_store="kubernetes",
    )


def username_of(resources):
    for item in resources["component"]["spec"]["metadata"]:
        if item["name"] == "saslUsername":
            return item["value"]
    raise AssertionError("no saslUsername in the component")


def connection(username):
    return dict(
        bootstrap_servers=BOOTSTRAP,
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username=username,
        sasl_password="token",
        tls_ca_cert=None,
        tls_check_hostname=True,
        provider="oci_streaming",
        request_timeout=5,
    )


def test_component_with_identity_domain_has_four_parts():
    r = build_resources(component(domain="Default"))
    assert username_of(r) == f"mytenancy/Default/todo-streaming/{POOL}"


@pytest.mark.parametrize("section", [{}, {"domain": None}], ids=["domain left out", "domain null"])
def test_component_without_identity_domain_has_three_parts(section):
    r = build_resources(component(**section))
    assert username_of(r) == f"mytenancy/todo-streaming/{POOL}"


def test_component_keeps_a_named_domain():
    r = build_resources(component(domain="OracleIdentityCloudService"))
    assert username_of(r) == f"mytenancy/OracleIdentityCloudService/todo-streaming/{POOL}"


@pytest.mark.parametrize(
    ("overrides", "setting", "text"),
    [
        ({"domain": ""}, "oci_streaming.domain", "must not be empty"),
        ({"domain": "   "}, "oci_streaming.domain", "must not be empty"),
        ({"domain": "a/b"}, "oci_streaming.domain", "'/'"),
        ({"domain": " Default"}, "oci_streaming.domain", "leading or trailing spaces"),
        ({"domain": "ocid1.domain.oc1..aaaa"}, "oci_streaming.domain", "is an OCID"),
        ({"domain": "Def\nault"}, "oci_streaming.domain", "control characters"),
        ({"tenancy": "ocid1.tenancy.oc1..aaaa"}, "oci_streaming.tenancy", "is an OCID"),
        ({"tenancy": "my/tenancy"}, "oci_streaming.tenancy", "'/'"),
        ({"tenancy": None}, "oci_streaming.tenancy", "is required"),
        ({"user": "ocid1.user.oc1..aaaa"}, "oci_streaming.user", "is an OCID"),
        ({"user": "todo/streaming"}, "oci_streaming.user", "'/'"),
        ({"user": ""}, "oci_streaming.user", "is required"),
        ({"stream_pool_id": "ocid1.stream.oc1.x"}, "oci_streaming.stream_pool_id", "stream pool OCID"),
    ],
)
def test_component_refuses_bad_parts_naming_the_setting(overrides, setting, text):
    with pytest.raises(SettingError) as info:
        build_resources(component(**overrides))
    assert info.value.setting == setting, str(info.value)
    assert text in str(info.value)


def test_builder_and_parser_agree_on_both_forms():
    for domain in ("Default", None):
        name = oci_streaming_username("mytenancy", "todo-streaming", POOL, domain)
        assert parse_oci_streaming_username(name) == dict(
            tenancy="mytenancy", domain=domain, user="todo-streaming", stream_pool_id=POOL
        )


@pytest.mark.parametrize(
    "username",
    [f"mytenancy/Default/todo-streaming/{POOL}", f"mytenancy/todo-streaming/{POOL}"],
    ids=["with domain", "without domain"],
)
def test_kafka_modules_accept_both_forms(username):
    assert kafka.validate_connection(connection(username)) == BOOTSTRAP


@pytest.mark.parametrize(
    ("username", "text"),
    [
        ("someone", "tenancyName/userName/streamPoolOCID"),
        (f"mytenancy/{POOL}", "tenancyName/domainName/userName/streamPoolOCID"),
        (f"a/b/c/d/{POOL}", "OCI Streaming needs"),
        ("mytenancy/Default/todo-streaming/ocid1.stream.oc1.x", "streamPoolOCID"),
        (f"mytenancy//todo-streaming/{POOL}", "the domain part: must not be empty"),
        (f"/todo-streaming/{POOL}", "the tenancy part: must not be empty"),
        (f"mytenancy/ocid1.user.oc1..aaaa/{POOL}", "the user part"),
        (f"mytenancy/ Default/todo-streaming/{POOL}", "leading or trailing spaces"),
    ],
)
def test_kafka_modules_refuse_malformed_usernames(username, text):
    with pytest.raises(SettingError) as info:
        kafka.validate_connection(connection(username))
    assert info.value.setting == "sasl_username", str(info.value)
    assert text in str(info.value)
