"""dapr_kafka_pubsub for real: the Component it builds carries messages through the test bed's
daprd over the SCRAM and SASL_SSL listeners, and Component + Secret are applied through the test
bed's kube-apiserver (Dapr CRDs installed) in the check -> apply -> re-apply -> modify -> delete rhythm,
with credentials never in the output, even at -vvv."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from pathlib import Path

import httpx
import pytest
from kw_ansible import connection_args, run_module
from testbed.daprd import SubscriberApp

pytestmark = pytest.mark.testbed

SECRET_STORE = "kw-local-secrets"


def write_resources(directory: Path, component_yaml: str, secret_name: str, values: dict[str, str]) -> None:
    """The module's Component unchanged, plus a local file secret store holding the Secret's keys."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pubsub.yaml").write_text(component_yaml)
    secrets_file = directory.parent / f"{directory.name}-secrets.json"
    secrets_file.write_text(json.dumps({secret_name: values}))
    (directory / "secretstore.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\n"
        "kind: Component\n"
        "metadata:\n"
        f"  name: {SECRET_STORE}\n"
        "spec:\n"
        "  type: secretstores.local.file\n"
        "  version: v1\n"
        "  metadata:\n"
        f"    - name: secretsFile\n      value: {json.dumps(str(secrets_file))}\n"
        '    - name: multiValued\n      value: "true"\n'
    )


def module_args_for(kafka, listener: str) -> tuple[dict, dict[str, str]]:
    """dapr_kafka_pubsub options for a test-bed listener and the values its Secret must hold."""
    if listener == "scram":
        args = {
            "provider": "strimzi",
            "brokers": [kafka.scram],
            "auth": "scram",
            "sasl_username": kafka.scram_user,
            "sasl_password": kafka.scram_password,
        }
        return args, {"saslPassword": kafka.scram_password}
    args = {
        "provider": "external",
        "brokers": [kafka.sasl_ssl],
        "auth": "plain",
        "tls": True,
        "sasl_username": kafka.plain_user,
        "sasl_password": kafka.plain_password,
        "tls_ca_cert": kafka.ca_file,
    }
    return args, {"saslPassword": kafka.plain_password, "caCert": Path(kafka.ca_file).read_text()}


@pytest.mark.parametrize("listener", ["scram", "sasl_ssl"])
def test_built_component_carries_a_message_through_daprd(kafka, daprd_factory, tmp_path, listener):
    topic = f"kw-dapr-{listener}-{uuid.uuid4().hex[:8]}"
    r = run_module(
        "kafka_topic", {**connection_args(kafka, listener), "topics": [{"name": topic, "partitions": 1}]}
    )
    assert not r.failed, r.result.get("msg")

    args, values = module_args_for(kafka, listener)
    r = run_module("dapr_kafka_pubsub", {**args, "apply": False, "secret_store": SECRET_STORE})
    assert not r.failed, r.result.get("msg")
    assert not r.changed
    assert set(r.result["secret"]["data"]) == set(values)
    assert all(v == "********" for v in r.result["secret"]["data"].values())
    for value in values.values():
        if len(value) > 8:
            assert value not in r.text
    write_resources(tmp_path / "resources", r.result["component_yaml"], r.result["secret_name"], values)

    app = SubscriberApp([{"pubsubname": "pubsub", "topic": topic, "route": "/events"}])
    try:
        sidecar = daprd_factory(f"kw-{listener}", app.port, tmp_path / "resources")
        sidecar.wait_app_ready()
        marker = uuid.uuid4().hex
        resp = httpx.post(
            f"{sidecar.http_url}/v1.0/publish/pubsub/{topic}", json={"marker": marker}, timeout=30
        )
        assert resp.status_code == 204, resp.text
        path, _headers, event = app.wait_event(90)
        assert path == "/events"
        assert event["data"] == {"marker": marker}
        assert event["topic"] == topic
        assert event["pubsubname"] == "pubsub"
        sidecar.stop()
    finally:
        app.close()
    run_module(
        "kafka_topic", {**connection_args(kafka, listener), "topics": [{"name": topic}], "state": "absent"}
    )


# ------------------------------------------------------------------ Kubernetes API


def kubectl_json(kube, *args: str) -> dict | None:
    proc = kube.kubectl("get", *args, "-o", "json", check=False)
    if proc.returncode != 0:
        assert "NotFound" in (proc.stderr or "") or "not found" in (proc.stderr or ""), proc.stderr
        return None
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def dapr_namespace(kube):
    kube.install_crds(["dapr/components.yaml"])
    name = f"kw-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_component_and_secret_rhythm_on_the_api_server(kafka, kube, dapr_namespace):
    password = secrets.token_urlsafe(24)
    new_password = secrets.token_urlsafe(24)
    ca_pem = Path(kafka.ca_file).read_text()
    base = {
        "provider": "strimzi",
        "namespace": dapr_namespace,
        "brokers": ["todo-kafka-kafka-bootstrap.kafka.svc:9093"],
        "auth": "scram",
        "tls": True,
        "tls_ca_cert": ca_pem,
        "sasl_username": "todo-app",
        "sasl_password": password,
        "scopes": ["backend", "audit"],
        "kubeconfig": kube.kubeconfig,
        "context": kube.context,
    }
    component = ("components.dapr.io", "pubsub", "-n", dapr_namespace)
    secret = ("secret", "pubsub-kafka", "-n", dapr_namespace)

    # check mode: both would be created (server-side dry run), nothing is
    r = run_module("dapr_kafka_pubsub", base, check=True, diff=True)
    assert not r.failed, r.result.get("msg")
    assert r.changed
    assert [(x["kind"], x["changed"]) for x in r.result["results"]] == [("Secret", True), ("Component", True)]
    assert kubectl_json(kube, *component) is None
    assert kubectl_json(kube, *secret) is None

    # apply
    r = run_module("dapr_kafka_pubsub", base)
    assert not r.failed, r.result.get("msg")
    assert r.changed
    assert "diff" not in r.result
    live = kubectl_json(kube, *component)
    meta = {m["name"]: m.get("value", m.get("secretKeyRef")) for m in live["spec"]["metadata"]}
    assert meta["authType"] == "password"
    assert meta["saslMechanism"] == "SHA-512"
    assert meta["saslPassword"] == {"name": "pubsub-kafka", "key": "saslPassword"}
    assert meta["caCert"] == {"name": "pubsub-kafka", "key": "caCert"}
    assert meta["consumerGroup"] == "{appID}"
    assert live["auth"] == {"secretStore": "kubernetes"}
    assert live["scopes"] == ["backend", "audit"]
    data = kubectl_json(kube, *secret)["data"]
    assert base64.b64decode(data["saslPassword"]).decode() == password
    assert base64.b64decode(data["caCert"]).decode() == ca_pem

    # re-apply: nothing changes
    r = run_module("dapr_kafka_pubsub", base, diff=True)
    assert not r.failed, r.result.get("msg")
    assert not r.changed
    assert "diff" not in r.result

    # modify: new password and per-replica groups (the fan-out case); diff masks the Secret
    modified = {**base, "sasl_password": new_password, "consumer_group_per_replica": True}
    r = run_module("dapr_kafka_pubsub", modified, diff=True)
    assert not r.failed, r.result.get("msg")
    assert r.changed
    secret_diff = next(d for d in r.result["diff"] if d["after_header"].startswith("Secret"))
    assert secret_diff["after"]["data"]["saslPassword"] == "******** (changed)"
    assert secret_diff["after"]["data"]["caCert"] == "********"
    assert new_password not in r.text and password not in r.text
    data = kubectl_json(kube, *secret)["data"]
    assert base64.b64decode(data["saslPassword"]).decode() == new_password
    live = kubectl_json(kube, *component)
    assert {m["name"]: m.get("value") for m in live["spec"]["metadata"]}[
        "consumerGroup"
    ] == "{appID}-{podName}"

    # -vvv with --diff while changing the password back: the values never show, in any form
    r = run_module("dapr_kafka_pubsub", base, diff=True, verbosity=3)
    assert r.rc == 0, r.text[-3000:]
    assert "localhost | CHANGED" in r.text
    for value in (password, new_password):
        assert value not in r.text
        assert base64.b64encode(value.encode()).decode() not in r.text
    assert base64.b64decode(kubectl_json(kube, *secret)["data"]["saslPassword"]).decode() == password

    # clean up: check mode keeps both, then delete, then nothing left
    r = run_module("dapr_kafka_pubsub", {**base, "state": "absent"}, check=True)
    assert r.changed and not r.failed, r.result.get("msg")
    assert kubectl_json(kube, *component) is not None
    r = run_module("dapr_kafka_pubsub", {**base, "state": "absent"})
    assert r.changed and not r.failed, r.result.get("msg")
    assert kubectl_json(kube, *component) is None
    assert kubectl_json(kube, *secret) is None
    r = run_module("dapr_kafka_pubsub", {**base, "state": "absent"})
    assert not r.changed and not r.failed


def test_impossible_settings_fail_naming_the_setting(kube):
    r = run_module(
        "dapr_kafka_pubsub",
        {
            "provider": "azure_event_hubs",
            "azure_event_hubs": {
                "namespace": "todo-events",
                "tier": "basic",
                "connection_string": "Endpoint=sb://todo-events.servicebus.windows.net/;SharedAccessKey=x",
            },
            "kubeconfig": kube.kubeconfig,
            "context": kube.context,
        },
    )
    assert r.failed
    assert r.result["setting"] == "azure_event_hubs.tier"
    assert r.result["msg"].startswith("azure_event_hubs.tier: the Basic tier has no Kafka endpoint")
    r = run_module(
        "dapr_kafka_pubsub",
        {"provider": "strimzi", "brokers": ["k:9092"], "max_message_bytes": 1024, "apply": False},
    )
    assert r.failed and r.result["setting"] == "max_message_bytes"
