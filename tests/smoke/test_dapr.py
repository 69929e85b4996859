"""daprd of the test bed: an app publishes through its daprd to Kafka and a second app receives the
event through its own daprd (programmatic subscription, GET /dapr/subscribe)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from testbed.daprd import SubscriberApp, kafka_pubsub_component

pytestmark = pytest.mark.testbed


def _publish(daprd, pubsub: str, topic: str, event: dict, token: str | None = None) -> int:
    response = httpx.post(
        f"http://127.0.0.1:{daprd.http_port}/v1.0/publish/{pubsub}/{topic}",
        json=event,
        headers={"dapr-api-token": token} if token else {},
        timeout=30,
    )
    return response.status_code


def test_publish_through_one_daprd_and_receive_through_another(kafka, daprd_factory, tmp_path):
    topic = f"smoke-dapr-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(kafka.client_config("plaintext"))
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)

    publisher_dir, subscriber_dir = tmp_path / "publisher", tmp_path / "subscriber"
    for directory, group in ((publisher_dir, "smoke-publisher"), (subscriber_dir, "smoke-subscriber")):
        directory.mkdir()
        (directory / "pubsub.yaml").write_text(
            kafka_pubsub_component(kafka.plaintext, consumer_group=group, initial_offset="oldest")
        )

    app_token = "smoke-app-token-" + uuid.uuid4().hex[:8]
    subscriber = SubscriberApp([{"pubsubname": "pubsub", "topic": topic, "route": "/events"}])
    publisher = SubscriberApp([])
    try:
        sub_sidecar = daprd_factory(
            "smoke-subscriber", subscriber.port, subscriber_dir, app_api_token=app_token
        )
        pub_sidecar = daprd_factory("smoke-publisher", publisher.port, publisher_dir)
        sub_sidecar.wait_app_ready()
        pub_sidecar.wait_app_ready()
        meta = sub_sidecar.metadata()
        assert any(s.get("topic") == topic for s in meta.get("subscriptions", [])), meta

        marker = uuid.uuid4().hex
        assert _publish(pub_sidecar, "pubsub", topic, {"marker": marker}) == 204

        path, headers, envelope = subscriber.wait_event(60)
        assert path == "/events"
        # a CloudEvent from the publishing app, carrying our payload unchanged
        assert envelope["data"] == {"marker": marker}
        assert envelope["topic"] == topic
        assert envelope["pubsubname"] == "pubsub"
        assert envelope["source"] == "smoke-publisher"
        # the subscriber's sidecar authenticates itself to its app with APP_API_TOKEN
        assert {k.lower(): v for k, v in headers.items()}.get("dapr-api-token") == app_token
        assert publisher.events.empty(), "the publisher has no subscription and must get nothing"
    finally:
        subscriber.close()
        publisher.close()


def test_daprd_rejects_calls_without_its_api_token(daprd_factory, tmp_path):
    token = "smoke-api-token-" + uuid.uuid4().hex[:8]
    sidecar = daprd_factory("smoke-token", None, tmp_path, api_token=token)
    refused = httpx.get(f"http://127.0.0.1:{sidecar.http_port}/v1.0/metadata", timeout=10)
    assert refused.status_code == 401
    assert sidecar.metadata()["id"] == "smoke-token"  # with the token it answers


def test_sidecar_restarts_on_the_same_ports(daprd_factory, tmp_path):
    sidecar = daprd_factory("smoke-restart", None, tmp_path)
    ports = (sidecar.http_port, sidecar.grpc_port, sidecar.metrics_port)
    sidecar.stop()
    assert not sidecar.responding()
    sidecar.start()
    assert (sidecar.http_port, sidecar.grpc_port, sidecar.metrics_port) == ports
    assert sidecar.metadata()["id"] == "smoke-restart"
    assert 'app_id="smoke-restart"' in httpx.get(sidecar.metrics_url, timeout=10).text
