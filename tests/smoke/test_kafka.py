"""Kafka of the test bed: produce/consume on every listener; wrong SASL passwords are rejected."""

import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from testbed.polling import eventually

pytestmark = pytest.mark.testbed


def _round_trip(conf: dict, topic: str) -> list[tuple[bytes, bytes]]:
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    producer = Producer(conf)
    payload = uuid.uuid4().hex.encode()
    producer.produce(topic, key=b"k1", value=payload)
    assert producer.flush(30) == 0, "message not delivered"
    consumer = Consumer(conf | {"group.id": f"smoke-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        received = [_next_message(consumer)]
    finally:
        consumer.close()
    assert received == [(b"k1", payload)]
    return received


def _next_message(consumer: Consumer) -> tuple[bytes, bytes]:
    def polled() -> tuple[bytes, bytes]:
        msg = consumer.poll(1.0)
        assert msg is not None, "nothing to read yet"
        assert msg.error() is None, msg.error()
        return msg.key(), msg.value()

    return eventually(polled, "a message for the consumer", within=60, interval=0)


@pytest.mark.parametrize("listener", ["plaintext", "scram", "sasl_ssl"])
def test_produce_consume_on_each_listener(kafka, listener):
    _round_trip(kafka.client_config(listener), f"smoke-{listener}-{uuid.uuid4().hex[:8]}")


def test_sasl_ssl_needs_the_test_bed_ca(kafka):
    """Without the CA the TLS handshake fails: the broker certificate is signed by the test bed's CA."""
    conf = kafka.client_config("sasl_ssl")
    assert conf["security.protocol"] == "SASL_SSL"
    conf.pop("ssl.ca.location")
    _connect_errors(conf)


def _connect_errors(conf: dict) -> None:
    admin = AdminClient(conf | {"log_level": "0"})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=10)


def _client_errors(conf: dict) -> list[KafkaError]:
    """The errors librdkafka reports (through error_cb, served by poll) once a producer has connected:
    none when it could read the cluster's metadata, else those that stopped it."""
    errors: list[KafkaError] = []
    producer = Producer(conf | {"error_cb": errors.append, "log_level": "0"})

    def connected_or_refused() -> bool:
        producer.poll(0.5)
        if not errors:
            producer.list_topics(timeout=5)  # raises until the connection is authenticated
        return True

    eventually(
        connected_or_refused,
        "the producer connected or refused",
        within=30,
        interval=0,
        ignoring=(KafkaException,),
    )
    producer.poll(0)
    return errors


@pytest.mark.parametrize("listener", ["scram", "sasl_ssl"])
def test_wrong_password_is_rejected(kafka, listener):
    good = _client_errors(kafka.client_config(listener))
    assert good == [], good
    conf = kafka.client_config(listener) | {"sasl.password": "wrong-" + uuid.uuid4().hex[:6]}
    errors = _client_errors(conf)
    assert errors, "no error reported for a wrong password"
    assert errors[0].code() == KafkaError._AUTHENTICATION, errors
    assert "Authentication failed" in errors[0].str() or "authentication" in errors[0].str().lower()


def test_restart_keeps_data(kafka):
    """Fault tests restart the broker: topics, messages and SASL users survive it."""
    conf = kafka.client_config("scram")
    topic = f"smoke-restart-{uuid.uuid4().hex[:8]}"
    before = _round_trip(conf, topic)
    kafka.restart()
    consumer = Consumer(conf | {"group.id": f"smoke-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        after = [_next_message(consumer)]
    finally:
        consumer.close()
    assert after == before
