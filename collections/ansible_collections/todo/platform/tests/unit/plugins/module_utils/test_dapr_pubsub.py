# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Provider rules and builders of the Dapr pubsub.kafka Component (pure logic)."""

from __future__ import annotations

import base64

import pytest
from ansible_collections.todo.platform.plugins.module_utils.dapr_pubsub import (
    MASK,
    build_resources,
    consumer_group,
    duration_seconds,
    parse_version,
)
from ansible_collections.todo.platform.plugins.module_utils.k8s_apply import masked as mask_secret
from ansible_collections.todo.platform.plugins.module_utils.providers import SettingError, parse_brokers

PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
POOL = "ocid1.streampool.oc1.eu-frankfurt-1.amaaaaexample"
EH_CONN = "Endpoint=sb://todo-events.servicebus.windows.net/;SharedAccessKeyName=app;SharedAccessKey=abc123="


def params(**overrides):
    base = dict(
        name="pubsub",
        namespace="todo",
        provider="strimzi",
        brokers=["kafka-bootstrap.kafka.svc:9092"],
        auth=None,
        sasl_username=None,
        sasl_password=None,
        scram_mechanism="SHA-512",
        tls=None,
        tls_ca_cert=None,
        tls_skip_verify=False,
        oci_streaming=None,
        azure_event_hubs=None,
        confluent_cloud=None,
        consumer_group="{appID}",
        consumer_group_per_replica=False,
        initial_offset="oldest",
        version=None,
        max_message_bytes=None,
        compression=None,
        heartbeat_interval=None,
        session_timeout=None,
        metadata_refresh_interval=None,
        scopes=None,
        secret_name=None,
        secret_store="kubernetes",
        extra_metadata=None,
    )
    base.update(overrides)
    return base


def oci(**overrides):
    section = dict(
        tenancy="mytenancy",
        domain="Default",
        user="todo-streaming",
        stream_pool_id=POOL,
        bootstrap_servers=["cell-1.streaming.eu-frankfurt-1.oci.oraclecloud.com:9092"],
        auth_token="oci-token-value",
    )
    section.update(overrides)
    return params(provider="oci_streaming", brokers=None, oci_streaming=section)


def event_hubs(**overrides):
    section = dict(namespace="todo-events", tier="standard", connection_string=EH_CONN, topics=None)
    section.update(overrides)
    return params(provider="azure_event_hubs", brokers=None, azure_event_hubs=section)


def confluent(**overrides):
    section = dict(
        bootstrap_servers=["pkc-abc12.westeurope.azure.confluent.cloud:9092"],
        api_key="KEY",
        api_secret="SECRET",
    )
    section.update(overrides)
    return params(provider="confluent_cloud", brokers=None, confluent_cloud=section)


def md(resources):
    """Component metadata as a dict name -> value or secretKeyRef."""
    out = {}
    for item in resources["component"]["spec"]["metadata"]:
        out[item["name"]] = item.get("value", item.get("secretKeyRef"))
    return out


def secret_values(resources):
    return {k: base64.b64decode(v).decode() for k, v in resources["secret"]["data"].items()}


def fails(p, setting, text=""):
    with pytest.raises(SettingError) as info:
        build_resources(p)
    assert info.value.setting == setting, str(info.value)
    assert text in str(info.value)
    assert str(info.value).startswith(setting + ":")
    return str(info.value)


# ------------------------------------------------------------------ in-cluster


def test_strimzi_without_auth_is_plain_tcp_and_needs_no_secret():
    r = build_resources(params())
    m = md(r)
    assert m["brokers"] == "kafka-bootstrap.kafka.svc:9092"
    assert m["authType"] == "none"
    assert m["disableTls"] == "true"
    assert "saslPassword" not in m
    assert r["secret"] is None
    assert "auth" not in r["component"]


@pytest.mark.parametrize("provider", ["strimzi", "external"])
def test_a_cloud_section_beside_another_provider_is_refused(provider):
    section = {"namespace": "todo-events", "connection_string": "Endpoint=sb://x/"}
    fails(params(provider=provider, azure_event_hubs=section), "azure_event_hubs", f"provider {provider}")


def test_component_shape():
    r = build_resources(params(scopes=["audit", "sync"]))
    c = r["component"]
    assert c["apiVersion"] == "dapr.io/v1alpha1"
    assert c["kind"] == "Component"
    assert c["metadata"]["name"] == "pubsub"
    assert c["metadata"]["namespace"] == "todo"
    assert c["spec"]["type"] == "pubsub.kafka"
    assert c["spec"]["version"] == "v1"
    assert c["scopes"] == ["audit", "sync"]


def test_strimzi_scram_puts_password_in_secret_only():
    r = build_resources(params(auth="scram", sasl_username="todo-app", sasl_password="s3cret-pw"))
    m = md(r)
    assert m["authType"] == "password"
    assert m["saslUsername"] == "todo-app"
    assert m["saslMechanism"] == "SHA-512"
    assert m["saslPassword"] == {"name": "pubsub-kafka", "key": "saslPassword"}
    assert r["component"]["auth"] == {"secretStore": "kubernetes"}
    assert secret_values(r) == {"saslPassword": "s3cret-pw"}
    assert "s3cret-pw" not in repr(r["component"])
    assert r["secret"]["metadata"] == {
        "name": "pubsub-kafka",
        "namespace": "todo",
        "labels": r["component"]["metadata"]["labels"],
    }


def test_scram_sha256_is_passed_through():
    r = build_resources(params(auth="scram", sasl_username="u", sasl_password="p", scram_mechanism="SHA-256"))
    assert md(r)["saslMechanism"] == "SHA-256"


def test_scram_with_tls_and_ca():
    r = build_resources(params(auth="scram", sasl_username="u", sasl_password="p", tls=True, tls_ca_cert=PEM))
    m = md(r)
    assert m["disableTls"] == "false"
    assert m["caCert"] == {"name": "pubsub-kafka", "key": "caCert"}
    assert secret_values(r)["caCert"] == PEM


def test_tls_without_sasl_uses_certificate_auth_type():
    r = build_resources(params(tls=True, tls_ca_cert=PEM))
    assert md(r)["authType"] == "certificate"


def test_tls_without_sasl_needs_ca():
    fails(params(tls=True), "tls_ca_cert", "TLS without SASL")


def test_in_cluster_refuses_plain():
    fails(params(auth="plain", sasl_username="u", sasl_password="p", tls=True), "auth", "none or scram")


def test_external_plain_needs_tls():
    fails(
        params(provider="external", auth="plain", sasl_username="u", sasl_password="p"), "tls", "clear text"
    )


def test_external_plain_with_tls_is_sasl_plain():
    r = build_resources(
        params(provider="external", auth="plain", sasl_username="u", sasl_password="p", tls=True)
    )
    assert md(r)["saslMechanism"] == "PLAINTEXT"  # Dapr's name for SASL/PLAIN
    assert md(r)["disableTls"] == "false"


def test_credentials_without_auth_are_refused():
    fails(params(sasl_username="u"), "sasl_username", "auth: none")


def test_ca_without_tls_is_refused():
    fails(params(tls_ca_cert=PEM), "tls_ca_cert", "tls: true")


def test_ca_must_be_pem():
    fails(params(tls=True, tls_ca_cert="not a cert"), "tls_ca_cert", "PEM")


def test_skip_verify_without_tls_is_refused():
    fails(params(tls_skip_verify=True), "tls_skip_verify")


def test_skip_verify_warns():
    r = build_resources(params(tls=True, tls_ca_cert=PEM, tls_skip_verify=True))
    assert md(r)["skipVerify"] == "true"
    assert any("not verified" in w for w in r["warnings"])


def test_brokers_required_for_in_cluster():
    fails(params(brokers=None), "brokers", "required")


@pytest.mark.parametrize("bad", ["kafka", "kafka:", "kafka:99999", "http://kafka:9092"])
def test_brokers_must_be_host_port(bad):
    fails(params(brokers=[bad]), "brokers")


def test_parse_brokers_accepts_comma_string_and_ipv6():
    assert parse_brokers("a:1, b:2") == ["a:1", "b:2"]
    assert parse_brokers(["[::1]:9092"]) == ["[::1]:9092"]


def test_unknown_provider():
    fails(params(provider="kinesis"), "provider")


# ------------------------------------------------------------------ versions


def test_in_cluster_default_version_is_modern():
    assert md(build_resources(params()))["version"] == "3.6.0"


def test_strimzi_refuses_versions_kafka4_removed():
    fails(params(version="2.0.0"), "version", "Kafka 4.x")


def test_redpanda_old_version_only_warns():
    r = build_resources(params(provider="redpanda", version="2.0.0"))
    assert md(r)["version"] == "2.0.0"
    assert any("2.1.0" in w for w in r["warnings"])


def test_version_must_look_like_a_version():
    fails(params(version="latest"), "version", "3.6.0")
    assert parse_version("3.6.0") == (3, 6, 0)


# ------------------------------------------------------------------ consumer groups


def test_consumer_group_defaults_to_app_id():
    assert md(build_resources(params()))["consumerGroup"] == "{appID}"


def test_consumer_group_per_replica_adds_pod_name():
    assert (
        consumer_group({"consumer_group": "{appID}", "consumer_group_per_replica": True})
        == "{appID}-{podName}"
    )
    assert (
        consumer_group({"consumer_group": "x-{podName}", "consumer_group_per_replica": True}) == "x-{podName}"
    )
    r = build_resources(params(consumer_group_per_replica=True, scopes=["sync"]))
    assert md(r)["consumerGroup"] == "{appID}-{podName}"


def test_initial_offset_checked():
    fails(params(initial_offset="latest"), "initial_offset")


# ------------------------------------------------------------------ message size and tuning


def test_one_kilobyte_max_message_bytes_is_refused():
    fails(params(max_message_bytes=1024), "max_message_bytes", "too small")


def test_max_message_bytes_kept_when_sensible():
    assert md(build_resources(params(max_message_bytes=900000)))["maxMessageBytes"] == "900000"


def test_unset_max_message_bytes_is_not_sent():
    assert "maxMessageBytes" not in md(build_resources(params()))


def test_provider_caps_max_message_bytes():
    fails(oci() | {"max_message_bytes": 2_000_000}, "max_message_bytes", "1048576")
    fails(event_hubs() | {"max_message_bytes": 1_046_528}, "max_message_bytes", "1046527")


def test_compression_rules():
    assert md(build_resources(params(compression="zstd")))["compression"] == "zstd"
    fails(event_hubs() | {"compression": "snappy"}, "compression", "gzip or none")


def test_session_timeout_must_cover_three_heartbeats():
    fails(params(heartbeat_interval="10s", session_timeout="20s"), "session_timeout", "three")


def test_bad_duration():
    fails(params(heartbeat_interval="ten seconds", session_timeout="30s"), "heartbeat_interval", "duration")
    assert duration_seconds("500ms", "x") == 0.5
    assert duration_seconds("3m", "x") == 180


def test_extra_metadata_passes_through_but_not_managed_keys():
    r = build_resources(params(extra_metadata={"consumeRetryInterval": "200ms", "escapeHeaders": True}))
    assert md(r)["consumeRetryInterval"] == "200ms"
    assert md(r)["escapeHeaders"] == "true"
    fails(params(extra_metadata={"saslPassword": "x"}), "extra_metadata", "saslPassword")


# ------------------------------------------------------------------ OCI Streaming


def test_oci_builds_username_from_parts_and_uses_sasl_ssl_plain():
    r = build_resources(oci())
    m = md(r)
    assert m["brokers"] == "cell-1.streaming.eu-frankfurt-1.oci.oraclecloud.com:9092"
    assert m["saslUsername"] == "mytenancy/Default/todo-streaming/" + POOL
    assert m["authType"] == "password"
    assert m["saslMechanism"] == "PLAINTEXT"
    assert m["disableTls"] == "false"
    assert m["version"] == "2.0.0"
    assert m["heartbeatInterval"] == "10s"
    assert m["sessionTimeout"] == "30s"
    assert secret_values(r) == {"saslPassword": "oci-token-value"}


def test_oci_port_must_be_9092():
    fails(
        oci(bootstrap_servers=["cell-1.streaming.eu-frankfurt-1.oci.oraclecloud.com:9093"]),
        "oci_streaming.bootstrap_servers",
        "9092",
    )


def test_oci_bootstrap_required_and_from_pool():
    fails(oci(bootstrap_servers=None), "oci_streaming.bootstrap_servers", "stream pool")
    fails(
        oci(bootstrap_servers=["kafka.example.com:9092"]), "oci_streaming.bootstrap_servers", "OCI Streaming"
    )


def test_oci_pool_ocid_checked():
    fails(oci(stream_pool_id="ocid1.stream.oc1.xyz"), "oci_streaming.stream_pool_id", "stream pool OCID")


def test_oci_parts_must_not_contain_slash():
    fails(oci(user="a/b"), "oci_streaming.user", "'/'")


def test_oci_needs_token():
    fails(oci(auth_token=None), "oci_streaming.auth_token", "auth token")


def test_cloud_refuses_tls_off():
    fails(oci() | {"tls": False}, "tls", "TLS")
    fails(event_hubs() | {"tls": False}, "tls", "TLS")
    fails(confluent() | {"tls": False}, "tls", "TLS")


def test_cloud_refuses_scram_and_skip_verify():
    fails(oci() | {"auth": "scram"}, "auth", "SASL/PLAIN")
    fails(oci() | {"tls_skip_verify": True}, "tls_skip_verify")


# ------------------------------------------------------------------ Event Hubs


def test_event_hubs_endpoint_user_and_version():
    r = build_resources(event_hubs(topics=["task-events", "reminders"]))
    m = md(r)
    assert m["brokers"] == "todo-events.servicebus.windows.net:9093"
    assert m["saslUsername"] == "$ConnectionString"
    assert m["saslMechanism"] == "PLAINTEXT"
    assert m["version"] == "1.0.0"
    assert m["disableTls"] == "false"
    assert m["clientConnectionTopicMetadataRefreshInterval"] == "3m"
    assert secret_values(r) == {"saslPassword": EH_CONN}


def test_event_hubs_basic_tier_is_refused():
    fails(event_hubs(tier="basic"), "azure_event_hubs.tier", "Basic")


def test_event_hubs_version_must_be_1_0_0():
    fails(event_hubs() | {"version": "3.6.0"}, "version", "1.0.0")


def test_event_hubs_at_most_ten_topics_on_standard():
    fails(event_hubs(topics=[f"t{i}" for i in range(11)]), "azure_event_hubs.topics", "at most 10")
    build_resources(event_hubs(topics=[f"t{i}" for i in range(10)]))
    build_resources(event_hubs(tier="premium", topics=[f"t{i}" for i in range(11)]))


def test_event_hubs_connection_string_rules():
    fails(
        event_hubs(connection_string="SharedAccessSignature sr=x&sig=y"),
        "azure_event_hubs.connection_string",
        "SAS token",
    )
    fails(
        event_hubs(connection_string=EH_CONN.replace("todo-events", "other-ns")),
        "azure_event_hubs.connection_string",
        "todo-events",
    )
    fails(
        event_hubs(
            connection_string="Endpoint=sb://todo-events.servicebus.windows.net/;SharedAccessKeyName=a"
        ),
        "azure_event_hubs.connection_string",
        "SharedAccessKey",
    )


def test_event_hubs_namespace_is_a_name_not_fqdn():
    fails(event_hubs(namespace="todo-events.servicebus.windows.net"), "azure_event_hubs.namespace", "FQDN")


def test_event_hubs_metadata_refresh_below_idle_cut():
    fails(event_hubs() | {"metadata_refresh_interval": "9m"}, "metadata_refresh_interval", "240s")


# ------------------------------------------------------------------ Confluent Cloud


def test_confluent_cloud():
    r = build_resources(confluent())
    m = md(r)
    assert m["saslUsername"] == "KEY"
    assert m["saslMechanism"] == "PLAINTEXT"
    assert m["disableTls"] == "false"
    assert secret_values(r) == {"saslPassword": "SECRET"}


def test_confluent_endpoint_checked():
    fails(confluent(bootstrap_servers=["kafka.example.com:9092"]), "confluent_cloud.bootstrap_servers")


# ------------------------------------------------------------------ names and masking


def test_names_validated():
    fails(params(name="PubSub"), "name")
    fails(params(namespace="todo_ns"), "namespace")
    fails(params(secret_name="Bad Name"), "secret_name")


def test_custom_secret_name_and_store():
    r = build_resources(
        params(
            auth="scram",
            sasl_username="u",
            sasl_password="p",
            secret_name="kafka-creds",
            secret_store="local",
        )
    )
    assert md(r)["saslPassword"] == {"name": "kafka-creds", "key": "saslPassword"}
    assert r["component"]["auth"] == {"secretStore": "local"}
    assert r["secret"]["metadata"]["name"] == "kafka-creds"


def test_mask_secret_hides_every_value():
    r = build_resources(
        params(auth="scram", sasl_username="u", sasl_password="p4ss", tls=True, tls_ca_cert=PEM)
    )
    masked = mask_secret(r["secret"])
    assert masked["data"] == {"saslPassword": MASK, "caCert": MASK}
    assert r["secret"]["data"]["saslPassword"] != MASK  # the original is untouched
    assert mask_secret(None) is None
