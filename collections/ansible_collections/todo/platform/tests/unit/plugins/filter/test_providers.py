# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""providers.py: each provider rule once, in both option vocabularies (the Dapr component's and
the Kafka modules'), the argument-spec rules of the modules, and the kafka role's filter. Beside the
filter tests: the filter needs the controller's ansible package, which ansible-test keeps away from
module_utils tests."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.todo.platform.plugins.filter.kafka_connection import kafka_connection
from ansible_collections.todo.platform.plugins.module_utils import providers
from ansible_collections.todo.platform.plugins.module_utils.kafka import (
    KAFKA_CONNECTION_REQUIRED_IF,
    KAFKA_CONNECTION_SPEC,
)
from ansible_collections.todo.platform.plugins.module_utils.providers import SettingError
from ansible_collections.todo.platform.plugins.modules.dapr_kafka_pubsub import ARGUMENT_SPEC

PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----"
POOL = "ocid1.streampool.oc1.eu-frankfurt-1.amaaaaexample"
OCI = dict(tenancy="mytenancy", domain="Default", user="todo-streaming", stream_pool_id=POOL)
OCI.update(bootstrap_servers=["cell-1.streaming.eu-frankfurt-1.oci.oraclecloud.com:9092"], auth_token="token")
EH_CONN = "Endpoint=sb://todo-events.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=k="
EVENT_HUBS = dict(namespace="todo-events", tier="standard", connection_string=EH_CONN)
CONFLUENT = dict(
    bootstrap_servers=["pkc-1.westeurope.azure.confluent.cloud:9092"], api_key="K", api_secret="S"
)
SECTIONS = {"oci_streaming": OCI, "azure_event_hubs": EVENT_HUBS, "confluent_cloud": CONFLUENT}


def refused(call, setting, text=""):
    with pytest.raises(SettingError) as info:
        call()
    assert info.value.setting == setting, str(info.value)
    assert text in info.value.message, str(info.value)


def client(**options):
    return providers.client_connection(
        dict(dict(bootstrap_servers=["k:9092"], provider="external"), **options)
    )


def cloud_client(provider):
    """A cloud provider's connection in the client vocabulary, as the kafka role's filter gives it."""
    return dict(kafka_connection(SECTIONS[provider], provider), provider=provider)


# ------------------------------------------------------------------ one normalised connection


@pytest.mark.parametrize("provider", providers.CLOUD)
def test_both_vocabularies_give_the_same_connection(provider):
    """The Dapr component and the Kafka modules reach a cloud service with the same connection."""
    dapr = providers.resolve_connection({"provider": provider, provider: SECTIONS[provider]})
    kafka = providers.client_connection(cloud_client(provider))
    assert dapr == kafka
    assert (dapr["tls"], dapr["auth"], dapr["mechanism"]) == (True, "plain", "PLAIN")
    assert providers.security_protocol(dapr) == "SASL_SSL"


def test_security_protocol_of_each_transport():
    assert [
        providers.security_protocol(providers.new_connection(auth=auth, tls=tls))
        for auth, tls in (("none", False), ("none", True), ("scram", False), ("plain", True))
    ] == ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]


def test_scram_mechanism_has_one_name():
    dapr = providers.resolve_connection(
        dict(provider="strimzi", brokers=["k:9092"], auth="scram", sasl_username="u", sasl_password="p")
    )
    kafka = client(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="u",
        sasl_password="p",
    )
    assert dapr["mechanism"] == kafka["mechanism"] == "SCRAM-SHA-512"


# ------------------------------------------------------------------ cloud rules, client vocabulary


def test_cloud_needs_sasl_plain_over_tls():
    ok = cloud_client("confluent_cloud")
    refused(
        lambda: providers.client_connection(dict(ok, security_protocol="SASL_PLAINTEXT")), "security_protocol"
    )
    refused(
        lambda: providers.client_connection(dict(ok, sasl_mechanism="SCRAM-SHA-512")),
        "security_protocol",
        "PLAIN",
    )


def test_cloud_ports_and_hosts():
    oci = cloud_client("oci_streaming")
    confluent = cloud_client("confluent_cloud")
    for options, text in (
        (dict(oci, bootstrap_servers=["a.oraclecloud.com:443"]), "port 9092"),
        (dict(oci, bootstrap_servers=["kafka.example.com:9092"]), "OCI Streaming endpoint"),
        (dict(confluent, bootstrap_servers=["kafka.example.com:9092"]), "*.confluent.cloud"),
    ):
        refused(lambda options=options: providers.client_connection(options), "bootstrap_servers", text)


def test_event_hubs_user_and_connection_string_in_client_vocabulary():
    eh = cloud_client("azure_event_hubs")
    assert eh["bootstrap_servers"] == ["todo-events.servicebus.windows.net:9093"]
    refused(
        lambda: providers.client_connection(dict(eh, sasl_username="admin")),
        "sasl_username",
        "$ConnectionString",
    )
    other = EH_CONN.replace("todo-events", "other-ns")
    refused(
        lambda: providers.client_connection(dict(eh, sasl_password=other)), "sasl_password", "todo-events"
    )


def test_oci_username_checked_in_client_vocabulary():
    oci = cloud_client("oci_streaming")
    assert oci["sasl_username"] == f"mytenancy/Default/todo-streaming/{POOL}"
    refused(
        lambda: providers.client_connection(dict(oci, sasl_username="someone")),
        "sasl_username",
        "streamPoolOCID",
    )


# ------------------------------------------------------------------ TLS and certificates


def test_ca_as_pem_or_file(tmp_path):
    assert providers.ca_certificate(PEM) == PEM + "\n"
    path = tmp_path / "ca.pem"
    path.write_text(PEM)
    assert providers.ca_certificate(str(path)) == str(path)
    assert providers.ca_certificate(str(path), read=True) == PEM + "\n"
    refused(lambda: providers.ca_certificate("/nonexistent/ca.pem"), "tls_ca_cert", "readable file")
    path.write_text("not a certificate")
    refused(lambda: providers.ca_certificate(str(path), read=True), "tls_ca_cert", "no PEM certificate")


def test_ca_and_skip_verify_only_with_tls():
    refused(lambda: client(tls_ca_cert=PEM), "tls_ca_cert", "SSL or SASL_SSL")
    dapr = dict(provider="external", brokers=["k:9092"])
    refused(
        lambda: providers.resolve_connection(dict(dapr, tls_skip_verify=True)), "tls_skip_verify", "tls: true"
    )


def test_cloud_refuses_skipping_verification():
    section = {"confluent_cloud": CONFLUENT}
    refused(
        lambda: providers.resolve_connection(
            dict(provider="confluent_cloud", tls_skip_verify=True, **section)
        ),
        "tls_skip_verify",
        "publicly trusted",
    )


# ------------------------------------------------------------------ argument-spec rules


def spec_errors(spec, params, **rules):
    with pytest.raises(SettingError) as info:
        providers.check_options(spec, params, **rules)
    return info.value.message


def dapr_errors(**params):
    return spec_errors(
        ARGUMENT_SPEC,
        params,
        required_if=providers.DAPR_REQUIRED_IF,
        mutually_exclusive=providers.DAPR_MUTUALLY_EXCLUSIVE,
    )


def test_dapr_spec_requires_the_providers_settings():
    assert "missing: brokers" in dapr_errors(provider="strimzi")
    assert "missing: oci_streaming" in dapr_errors(provider="oci_streaming")
    scram_without_password = dict(provider="external", brokers=["k:9092"], auth="scram", sasl_username="u")
    assert "missing: sasl_password" in dapr_errors(**scram_without_password)


def test_dapr_spec_keeps_brokers_credentials_and_sections_apart():
    assert "brokers|oci_streaming" in dapr_errors(provider="strimzi", brokers=["k:9092"], oci_streaming=OCI)
    assert "sasl_username|confluent_cloud" in dapr_errors(
        provider="confluent_cloud", confluent_cloud=CONFLUENT, sasl_username="u"
    )
    assert "oci_streaming|azure_event_hubs" in dapr_errors(
        provider="oci_streaming", oci_streaming=OCI, azure_event_hubs=EVENT_HUBS
    )


def test_dapr_spec_choices_come_from_the_constants():
    assert ARGUMENT_SPEC["provider"]["choices"] == list(providers.PROVIDERS)
    assert ARGUMENT_SPEC["auth"]["choices"] == list(providers.AUTH_TYPES)
    assert KAFKA_CONNECTION_SPEC["sasl_mechanism"]["choices"] == list(providers.SASL_MECHANISMS)


def test_client_spec_requires_sasl_settings_with_a_sasl_protocol():
    message = spec_errors(
        KAFKA_CONNECTION_SPEC,
        dict(bootstrap_servers=["k:9092"], security_protocol="SASL_SSL", sasl_username="u"),
        required_if=KAFKA_CONNECTION_REQUIRED_IF,
    )
    assert "missing: sasl_mechanism, sasl_password" in message


def test_client_refuses_sasl_settings_without_a_sasl_protocol():
    refused(lambda: client(sasl_username="u"), "sasl_username", "SASL_*")


# ------------------------------------------------------------------ the kafka role's filter


def test_filter_names_the_role_variable():
    with pytest.raises(AnsibleFilterError, match=r"kafka_oci_streaming\.auth_token: is required"):
        kafka_connection(dict(OCI, auth_token=""), "oci_streaming")


def test_filter_in_cluster_and_external():
    assert kafka_connection({}, "strimzi") == {}
    assert kafka_connection({"bootstrap_servers": ["k:9092"], "sasl_username": ""}, "external") == {
        "bootstrap_servers": ["k:9092"],
        "security_protocol": "PLAINTEXT",
    }
    with pytest.raises(AnsibleFilterError, match="provider must be one of"):
        kafka_connection({}, "kinesis")
