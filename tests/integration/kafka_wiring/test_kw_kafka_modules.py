"""kafka_topic, kafka_probe and kafka_consumer_lag_info against the test bed's real Kafka,
on its three listeners (PLAINTEXT, SASL_PLAINTEXT SCRAM-SHA-512, SASL_SSL PLAIN + test-bed CA)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kw_ansible import LISTENERS, connection_args, run_module
from testbed.polling import eventually

pytestmark = pytest.mark.testbed

DAY_MS = 86_400_000


def cluster_topic(kafka, name: str) -> dict | None:
    """What the broker really holds, read with a plain admin client (not the module)."""
    admin = AdminClient(kafka.client_config("plaintext"))
    md = admin.list_topics(timeout=60)
    if name not in md.topics or md.topics[name].error is not None:
        return None
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    configs = admin.describe_configs([res], request_timeout=60)[res].result(timeout=60)
    return {"partitions": len(md.topics[name].partitions), "retention.ms": configs["retention.ms"].value}


def other_ca_pem() -> str:
    """A CA that did not sign the broker certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the test-bed CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize("listener", LISTENERS)
def test_topic_rhythm(kafka, listener):
    name = f"kw-{listener}-{uuid.uuid4().hex[:8]}"
    conn = connection_args(kafka, listener)
    wanted = {"name": name, "partitions": 2, "replication_factor": 1, "retention_ms": DAY_MS}

    # check mode: reported as a change, validated by the broker, nothing created
    r = run_module("kafka_topic", {**conn, "topics": [wanted]}, check=True, diff=True)
    assert not r.failed, r.result.get("msg")
    assert r.changed
    assert r.result["actions"][0]["op"] == "create"
    assert r.result["diff"]["after"][name]["partitions"] == 2
    assert cluster_topic(kafka, name) is None

    # apply
    r = run_module("kafka_topic", {**conn, "topics": [wanted]})
    assert not r.failed, r.result.get("msg")
    assert r.changed
    assert cluster_topic(kafka, name) == {"partitions": 2, "retention.ms": str(DAY_MS)}
    assert r.result["topics"][0]["exists"] is True
    assert r.result["topics"][0]["partitions"] == 2

    # re-apply: nothing to do
    r = run_module("kafka_topic", {**conn, "topics": [wanted]})
    assert not r.failed, r.result.get("msg")
    assert not r.changed
    assert r.result["actions"] == []

    # modify: more partitions and longer retention; check mode first changes nothing
    modified = {**wanted, "partitions": 3, "retention_ms": 2 * DAY_MS}
    r = run_module("kafka_topic", {**conn, "topics": [modified]}, check=True, diff=True)
    assert r.changed and not r.failed, r.result.get("msg")
    assert r.result["diff"]["before"][name]["partitions"] == 2
    assert r.result["diff"]["after"][name]["config"]["retention.ms"] == str(2 * DAY_MS)
    assert cluster_topic(kafka, name) == {"partitions": 2, "retention.ms": str(DAY_MS)}
    r = run_module("kafka_topic", {**conn, "topics": [modified]})
    assert r.changed and not r.failed, r.result.get("msg")
    assert cluster_topic(kafka, name) == {"partitions": 3, "retention.ms": str(2 * DAY_MS)}
    assert "diff" not in r.result  # diff only in diff mode

    # impossible change: fewer partitions
    r = run_module("kafka_topic", {**conn, "topics": [{**modified, "partitions": 1}]})
    assert r.failed
    assert "cannot reduce partitions" in r.result["msg"]
    assert cluster_topic(kafka, name)["partitions"] == 3

    # clean up: check mode keeps it, then delete, then nothing left to delete
    r = run_module("kafka_topic", {**conn, "topics": [{"name": name}], "state": "absent"}, check=True)
    assert r.changed and not r.failed
    assert cluster_topic(kafka, name) is not None
    r = run_module("kafka_topic", {**conn, "topics": [{"name": name}], "state": "absent"})
    assert r.changed and not r.failed, r.result.get("msg")
    assert cluster_topic(kafka, name) is None
    r = run_module("kafka_topic", {**conn, "topics": [{"name": name}], "state": "absent"})
    assert not r.changed and not r.failed


def test_topic_refuses_event_hubs_and_names_the_fix(kafka):
    r = run_module(
        "kafka_topic",
        {**connection_args(kafka, "plaintext"), "provider": "azure_event_hubs", "topics": [{"name": "x"}]},
    )
    assert r.failed
    assert "create the topics as event hubs in Azure" in r.result["msg"]


@pytest.mark.parametrize("listener", LISTENERS)
def test_probe_reads_brokers_controller_topics(kafka, listener):
    name = f"kw-probe-{uuid.uuid4().hex[:8]}"
    r = run_module(
        "kafka_topic", {**connection_args(kafka, listener), "topics": [{"name": name, "partitions": 1}]}
    )
    assert not r.failed, r.result.get("msg")
    r = run_module("kafka_probe", {**connection_args(kafka, listener), "topics": [name]}, check=True)
    assert not r.failed, r.result.get("msg")
    assert r.result["reachable"] is True
    assert r.result["failure_class"] == ""
    assert len(r.result["brokers"]) == 1
    assert r.result["brokers"][0]["port"] > 0
    assert r.result["controller_id"] == r.result["brokers"][0]["id"]
    assert name in [t["name"] for t in r.result["topics"]]
    run_module(
        "kafka_topic", {**connection_args(kafka, listener), "topics": [{"name": name}], "state": "absent"}
    )


@pytest.mark.parametrize("listener", ["scram", "sasl_ssl"])
def test_probe_wrong_password_is_sasl_authentication(kafka, listener):
    r = run_module("kafka_probe", connection_args(kafka, listener, sasl_password="wrong-password"))
    assert r.failed
    assert r.result["failure_class"] == "sasl_authentication", r.result["msg"]
    assert "\n" not in r.result["msg"]
    # fail_on_error=false reports instead of failing
    r = run_module(
        "kafka_probe", connection_args(kafka, listener, sasl_password="wrong-password", fail_on_error=False)
    )
    assert not r.failed
    assert r.result["reachable"] is False
    assert r.result["failure_class"] == "sasl_authentication"


def test_probe_wrong_ca_is_tls(kafka):
    r = run_module("kafka_probe", connection_args(kafka, "sasl_ssl", tls_ca_cert=other_ca_pem()))
    assert r.failed
    assert r.result["failure_class"] == "tls", r.result["msg"]
    assert "tls_ca_cert" in r.result["msg"]


def test_probe_closed_port_is_tcp_and_unknown_name_is_dns(kafka):
    r = run_module("kafka_probe", {"bootstrap_servers": ["127.0.0.1:1"], "request_timeout": 3})
    assert r.result["failure_class"] == "tcp"
    r = run_module("kafka_probe", {"bootstrap_servers": ["kafka.invalid:9092"], "request_timeout": 3})
    assert r.result["failure_class"] == "dns"


def test_probe_plaintext_client_on_sasl_listener_fails_clearly(kafka):
    r = run_module("kafka_probe", {"bootstrap_servers": [kafka.scram], "request_timeout": 5})
    assert r.failed
    assert r.result["failure_class"] in ("protocol", "timeout", "tcp"), r.result["msg"]
    assert "\n" not in r.result["msg"]


def test_topic_output_never_shows_the_password_even_at_vvv(kafka):
    name = f"kw-secret-{uuid.uuid4().hex[:8]}"
    args = {**connection_args(kafka, "scram"), "topics": [{"name": name, "partitions": 1}]}
    r = run_module("kafka_topic", args, verbosity=3)
    assert r.rc == 0, r.text[-3000:]
    assert kafka.scram_password not in r.text
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in r.text  # the password option is shown masked
    run_module("kafka_topic", {**args, "state": "absent"})


@pytest.mark.parametrize("listener", LISTENERS)
def test_lag_is_produced_minus_consumed(kafka, listener):
    topic = f"kw-lag-{listener}-{uuid.uuid4().hex[:8]}"
    group = f"kw-group-{uuid.uuid4().hex[:8]}"
    conn = connection_args(kafka, listener)
    r = run_module("kafka_topic", {**conn, "topics": [{"name": topic, "partitions": 2}]})
    assert not r.failed, r.result.get("msg")

    produced, consumed = 10, 4
    producer = Producer(kafka.client_config(listener))
    for i in range(produced):
        producer.produce(topic, key=str(i).encode(), value=b"event %d" % i)
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            **kafka.client_config(listener),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got = 0

    def consumed_and_committed() -> bool:
        nonlocal got
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            got += 1
            consumer.commit(message=msg, asynchronous=False)
        assert got == consumed, f"{got} of {consumed} messages consumed"
        return True

    try:
        eventually(consumed_and_committed, f"{consumed} messages consumed", within=120, interval=0)
    finally:
        consumer.close()

    r = run_module("kafka_consumer_lag_info", {**conn, "groups": [group], "topics": [topic]}, check=True)
    assert not r.failed, r.result.get("msg")
    assert r.result["total_lag"] == produced - consumed
    (g,) = r.result["groups"]
    assert g["group"] == group
    (t,) = g["topics"]
    assert t["topic"] == topic and t["lag"] == produced - consumed
    assert sum(p["end_offset"] for p in t["partitions"]) == produced
    assert sum(p["committed_offset"] or 0 for p in t["partitions"]) == consumed

    # all groups: ours is among them with the same lag
    r = run_module("kafka_consumer_lag_info", {**conn, "topics": [topic]})
    assert not r.failed, r.result.get("msg")
    assert {x["group"]: x["lag"] for x in r.result["groups"]}[group] == produced - consumed
    run_module("kafka_topic", {**conn, "topics": [{"name": topic}], "state": "absent"})
