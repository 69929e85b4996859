# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options, client configuration, preflight classification, k8s comparison helpers."""

from __future__ import annotations

import socket
import ssl

import pytest
from ansible_collections.todo.platform.plugins.module_utils import kafka
from ansible_collections.todo.platform.plugins.module_utils.dapr_pubsub import MASK
from ansible_collections.todo.platform.plugins.module_utils.k8s_apply import comparable, masked
from ansible_collections.todo.platform.plugins.module_utils.providers import SettingError

PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


def conn(**overrides):
    p = dict(
        bootstrap_servers=["127.0.0.1:9092"],
        security_protocol="PLAINTEXT",
        sasl_mechanism=None,
        sasl_username=None,
        sasl_password=None,
        tls_ca_cert=None,
        tls_check_hostname=True,
        provider="external",
        request_timeout=5,
    )
    p.update(overrides)
    return p


def rejects(p, setting, text=""):
    with pytest.raises(SettingError) as info:
        kafka.validate_connection(p)
    assert info.value.setting == setting, str(info.value)
    assert text in str(info.value)


# ------------------------------------------------------------------ client configuration


def test_plaintext_config():
    c = kafka.client_config(conn())
    assert c["bootstrap.servers"] == "127.0.0.1:9092"
    assert c["security.protocol"] == "plaintext"
    assert "sasl.username" not in c
    assert c["socket.timeout.ms"] == 5000


def test_scram_config():
    c = kafka.client_config(
        conn(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="u",
            sasl_password="p",
        )
    )
    assert (c["security.protocol"], c["sasl.mechanism"], c["sasl.username"], c["sasl.password"]) == (
        "sasl_plaintext",
        "SCRAM-SHA-512",
        "u",
        "p",
    )


def test_sasl_ssl_with_pem_and_with_file(tmp_path):
    c = kafka.client_config(
        conn(
            security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            sasl_username="u",
            sasl_password="p",
            tls_ca_cert=PEM,
        )
    )
    assert c["ssl.ca.pem"] == PEM
    assert c["ssl.endpoint.identification.algorithm"] == "https"
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM)
    c = kafka.client_config(conn(security_protocol="SSL", tls_ca_cert=str(ca), tls_check_hostname=False))
    assert c["ssl.ca.location"] == str(ca)
    assert c["ssl.endpoint.identification.algorithm"] == "none"


def test_sasl_settings_without_sasl_protocol_refused():
    rejects(conn(sasl_username="u"), "sasl_username", "SASL_*")


def test_ca_without_tls_refused():
    rejects(conn(tls_ca_cert=PEM), "tls_ca_cert", "SSL or SASL_SSL")


def test_ca_must_exist():
    rejects(conn(security_protocol="SSL", tls_ca_cert="/nonexistent/ca.pem"), "tls_ca_cert", "readable file")


def test_bootstrap_servers_checked():
    rejects(conn(bootstrap_servers=["kafka"]), "bootstrap_servers")
    rejects(conn(bootstrap_servers=[]), "bootstrap_servers")


def test_cloud_providers_need_sasl_ssl_plain():
    rejects(conn(provider="confluent_cloud"), "security_protocol", "SASL_SSL")


def test_oci_rules():
    ok = conn(
        provider="oci_streaming",
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        bootstrap_servers=["cell-1.streaming.eu-frankfurt-1.oci.oraclecloud.com:9092"],
        sasl_username="t/Default/u/ocid1.streampool.oc1.x",
        sasl_password="token",
    )
    kafka.validate_connection(ok)
    rejects(
        dict(ok, bootstrap_servers=["cell-1.streaming.eu-frankfurt-1.oci.oraclecloud.com:443"]),
        "bootstrap_servers",
        "9092",
    )
    rejects(dict(ok, sasl_username="someone"), "sasl_username", "streamPoolOCID")


def test_event_hubs_rules():
    ok = conn(
        provider="azure_event_hubs",
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        bootstrap_servers=["ns1.servicebus.windows.net:9093"],
        sasl_username="$ConnectionString",
        sasl_password="Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKey=x",
    )
    kafka.validate_connection(ok)
    rejects(dict(ok, bootstrap_servers=["ns1.servicebus.windows.net:9092"]), "bootstrap_servers", "9093")
    rejects(dict(ok, sasl_username="admin"), "sasl_username", "$ConnectionString")


# ------------------------------------------------------------------ preflight classification


class FakeSocket:
    def close(self):
        pass


def no_dns(host, port, *args):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def dns_ok(host, port, *args):
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]


def refused(address, timeout):
    raise ConnectionRefusedError(111, "Connection refused")


def connects(address, timeout):
    return FakeSocket()


def test_preflight_dns():
    with pytest.raises(kafka.KafkaFailure) as info:
        kafka.preflight(conn(), ["nowhere.invalid:9092"], resolver=no_dns, connector=connects)
    assert info.value.failure_class == "dns"
    assert "nowhere.invalid" in info.value.message
    assert "\n" not in info.value.message


def test_preflight_tcp():
    with pytest.raises(kafka.KafkaFailure) as info:
        kafka.preflight(conn(), ["127.0.0.1:1"], resolver=dns_ok, connector=refused)
    assert info.value.failure_class == "tcp"
    assert "Connection refused" in info.value.message


def test_preflight_passes_reachable_brokers_only():
    calls = []

    def some(address, timeout):
        calls.append(address)
        if address[1] == 1:
            raise ConnectionRefusedError(111, "Connection refused")
        return FakeSocket()

    assert kafka.preflight(conn(), ["127.0.0.1:1", "127.0.0.1:2"], resolver=dns_ok, connector=some) == [
        "127.0.0.1:2"
    ]


def test_preflight_tls_untrusted(monkeypatch):
    class Ctx:
        check_hostname = True

        def wrap_socket(self, sock, server_hostname):
            err = ssl.SSLCertVerificationError(1, "certificate verify failed")
            err.verify_message = "self-signed certificate in certificate chain"
            raise err

    monkeypatch.setattr(kafka, "_tls_context", lambda p: Ctx())
    with pytest.raises(kafka.KafkaFailure) as info:
        kafka.preflight(
            conn(security_protocol="SSL"), ["127.0.0.1:9093"], resolver=dns_ok, connector=connects
        )
    assert info.value.failure_class == "tls"
    assert "tls_ca_cert" in info.value.message


def test_tls_beats_tcp_when_brokers_fail_differently(monkeypatch):
    class Ctx:
        def wrap_socket(self, sock, server_hostname):
            raise ssl.SSLError(1, "wrong version number")

    def half(address, timeout):
        if address[1] == 1:
            raise ConnectionRefusedError(111, "Connection refused")
        return FakeSocket()

    monkeypatch.setattr(kafka, "_tls_context", lambda p: Ctx())
    with pytest.raises(kafka.KafkaFailure) as info:
        kafka.preflight(conn(security_protocol="SSL"), ["h:1", "h:2"], resolver=dns_ok, connector=half)
    assert info.value.failure_class == "tls"


# ------------------------------------------------------------------ librdkafka error classification


class Err:
    def __init__(self, code, text):
        self._code, self._text = code, text

    def code(self):
        return self._code

    def str(self):
        return self._text


def test_failure_from_errors_prefers_authentication_over_transport():
    from confluent_kafka import KafkaError

    errors = [
        Err(KafkaError._TRANSPORT, "Disconnected"),
        Err(
            KafkaError._AUTHENTICATION,
            "SASL authentication error: Authentication failed\n(invalid credentials)",
        ),
    ]
    failure = kafka.failure_from_errors(errors, Err(KafkaError._TIMED_OUT, "timed out"))
    assert failure.failure_class == "sasl_authentication"
    assert "\n" not in failure.message
    assert "sasl_password" in failure.message


def test_failure_classes_of_codes():
    from confluent_kafka import KafkaError

    assert kafka.classify_kafka_error(KafkaError._SSL) == "tls"
    assert kafka.classify_kafka_error(KafkaError._RESOLVE) == "dns"
    assert kafka.classify_kafka_error(KafkaError.TOPIC_AUTHORIZATION_FAILED) == "authorization"
    assert kafka.classify_kafka_error(KafkaError.CLUSTER_AUTHORIZATION_FAILED) == "authorization"
    handshake = Err(KafkaError._TRANSPORT, "Disconnected while requesting ApiVersion: APIVERSION_QUERY")
    assert kafka.failure_from_errors([handshake]).failure_class == "protocol"
    assert kafka.failure_from_errors([]).failure_class == "unknown"


# ------------------------------------------------------------------ k8s helpers


def test_comparable_drops_server_fields():
    obj = {
        "kind": "Component",
        "metadata": {
            "name": "p",
            "resourceVersion": "5",
            "generation": 2,
            "managedFields": [{}],
            "uid": "u",
            "creationTimestamp": "t",
        },
        "spec": {"a": 1},
    }
    assert comparable(obj) == {"kind": "Component", "metadata": {"name": "p"}, "spec": {"a": 1}}
    assert obj["metadata"]["resourceVersion"] == "5"
    assert comparable(None) is None


def test_masked_marks_changed_secret_keys():
    before = {"kind": "Secret", "data": {"saslPassword": "b2xk", "caCert": "Y2E="}}
    after = {"kind": "Secret", "data": {"saslPassword": "bmV3", "caCert": "Y2E="}}
    m = masked(after, before)
    assert m["data"] == {"saslPassword": MASK + " (changed)", "caCert": MASK}
    assert masked(before)["data"] == {"saslPassword": MASK, "caCert": MASK}
    component = {"kind": "Component", "spec": {}}
    assert masked(component) is component
