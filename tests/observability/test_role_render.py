"""What the monitoring and logging roles hand to Helm and the API server, per environment:
rendered by tests/observability/render.yml (ansible-playbook, no cluster) and checked against
the contracts of kube-prometheus-stack, Loki and Alloy (docs/observability.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from alloy_check import parse
from common import DASHBOARDS_DIR, ROOT, SERVICES

HERE = Path(__file__).parent
ENVS = ["kind", "minikube", "oke", "aks", "gke"]
CLOUD_STORAGE = {
    "kind": "filesystem",
    "minikube": "filesystem",
    "oke": "s3",
    "aks": "azure",
    "gcs": "gcs",
    "gke": "gcs",
}
PROMOTED = {"namespace", "service", "level"}
FAKE_SECRET = "test-password-not-real"


@pytest.fixture(scope="module")
def rendered_all(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("render")
    playbook = Path(sys.executable).with_name("ansible-playbook")
    result = subprocess.run(
        [str(playbook), str(HERE / "render.yml"), "-e", f"envs={','.join(ENVS)}", "-e", f"out={out}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "[WARNING]" not in result.stderr, result.stderr
    return out


@pytest.fixture(params=ENVS)
def rendered(request: pytest.FixtureRequest, rendered_all: Path) -> tuple[str, Path]:
    return request.param, rendered_all / request.param


def load(path: Path):  # noqa: ANN201 - YAML of any shape
    return yaml.safe_load(path.read_text())


def test_prometheus_keeps_15_days_and_picks_monitors_from_every_namespace(rendered) -> None:
    env, out = rendered
    spec = load(out / "monitoring-values.yml")["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "15d"
    for kind in ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False, kind
    for kind in ("serviceMonitor", "podMonitor", "rule"):
        assert spec[f"{kind}NamespaceSelector"] == {}, kind
    pvc = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    if env in ("kind", "minikube"):
        assert "storageClassName" not in pvc  # the cluster's default class
    else:
        assert pvc["storageClassName"] and pvc["resources"]["requests"]["storage"] == "50Gi"


def test_grafana_takes_its_admin_from_a_secret_and_our_datasources(rendered) -> None:
    _, out = rendered
    grafana = load(out / "monitoring-values.yml")["grafana"]
    assert grafana["admin"] == {
        "existingSecret": "grafana-admin",
        "userKey": "admin-user",
        "passwordKey": "admin-password",
    }
    assert grafana["sidecar"]["dashboards"]["label"] == "grafana_dashboard"
    assert grafana["sidecar"]["datasources"]["defaultDatasourceEnabled"] is False
    assert FAKE_SECRET not in (out / "monitoring-values.yml").read_text()
    objects = load(out / "objects.yml")
    ds_cm = next(o for o in objects if o["metadata"]["name"] == "todo-grafana-datasources")
    assert ds_cm["metadata"]["labels"]["grafana_datasource"] == "1"
    datasources = yaml.safe_load(ds_cm["data"]["todo-datasources.yaml"])["datasources"]
    assert {d["uid"]: d["type"] for d in datasources} == {
        "todo-prometheus": "prometheus",
        "todo-loki": "loki",
    }


def test_servicemonitors_select_the_services_by_their_labels(rendered) -> None:
    _, out = rendered
    for service in SERVICES:
        sm = load(out / f"servicemonitor-{service}.yml")
        assert sm["kind"] == "ServiceMonitor" and sm["apiVersion"] == "monitoring.coreos.com/v1"
        spec = sm["spec"]
        assert spec["selector"]["matchLabels"] == {
            "app.kubernetes.io/part-of": "todo-platform",
            "app.kubernetes.io/name": service,
        }
        assert spec["namespaceSelector"] == {"matchNames": ["todo"]}
        assert spec["jobLabel"] == "app.kubernetes.io/name"
        (endpoint,) = spec["endpoints"]
        assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("http", "/metrics", "15s")
        assert {
            "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_name"],
            "targetLabel": "service",
            "action": "replace",
        } in endpoint["relabelings"]


def test_dapr_podmonitor_scrapes_the_dapr_metrics_port(rendered) -> None:
    _, out = rendered
    pm = next(o for o in load(out / "objects.yml") if o["metadata"]["name"] == "dapr-sidecars")
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "dapr-metrics"
    assert {"targetLabel": "job", "replacement": "dapr-sidecars", "action": "replace"} in endpoint[
        "relabelings"
    ]


def test_kafka_exporter_gets_credentials_from_a_secret_only(rendered) -> None:
    _, out = rendered
    objects = load(out / "objects.yml")
    deploy = next(o for o in objects if o["kind"] == "Deployment")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(":v1.10.0")
    args = container["args"]
    assert "--kafka.server=broker-0:9092" in args and "--kafka.server=broker-1:9092" in args
    assert "--sasl.mechanism=scram-sha512" in args and "--tls.enabled" in args
    assert "--sasl.password=$(KAFKA_PASSWORD)" in args
    assert FAKE_SECRET not in json.dumps(deploy)
    assert any(o["kind"] == "ServiceMonitor" and o["metadata"]["name"] == "kafka-exporter" for o in objects)


def test_prometheusrule_carries_absolute_runbook_links(rendered) -> None:
    _, out = rendered
    rule = load(out / "prometheusrule-todo-platform.rules.yml")
    assert rule["kind"] == "PrometheusRule"
    urls = [
        r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r
    ]
    assert urls and all(u.startswith("https://") and "/docs/runbooks.md#" in u for u in urls)


def test_dashboard_configmaps_carry_the_sidecar_label_and_the_json(rendered) -> None:
    _, out = rendered
    for path in sorted(out.glob("dashboard-*.yml")):
        cm = load(path)
        name = path.stem.removeprefix("dashboard-")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(cm["data"][f"{name}.json"]) == json.loads(
            (DASHBOARDS_DIR / f"{name}.json").read_text()
        )


def test_loki_keeps_logs_as_long_as_the_environment_requires(rendered) -> None:
    env, out = rendered
    values = load(out / "loki-values.yml")
    loki = values["loki"]
    assert values["deploymentMode"] == "Monolithic"
    assert loki["limits_config"]["retention_period"] == ("168h" if env in ("kind", "minikube") else "720h")
    assert loki["compactor"]["retention_enabled"] is True
    storage = CLOUD_STORAGE[env]
    assert loki["compactor"]["delete_request_store"] == storage
    assert loki["storage"]["type"] == storage
    (schema,) = loki["schemaConfig"]["configs"]
    assert (schema["store"], schema["schema"], schema["index"]["period"], schema["object_store"]) == (
        "tsdb",
        "v13",
        "24h",
        storage,
    )
    assert loki["limits_config"]["allow_structured_metadata"] is True
    assert not set(loki["storage"]["bucketNames"].values()) & {"chunks", "ruler", "admin"}
    if storage == "s3":
        s3 = loki["storage"]["s3"]
        assert s3["s3ForcePathStyle"] is True
        assert s3["endpoint"] == "https://tenancyns.compat.objectstorage.eu-frankfurt-1.oraclecloud.com"
        assert s3["secretAccessKey"] == "${LOKI_S3_SECRET_ACCESS_KEY}"
    if storage == "filesystem":
        assert values["singleBinary"]["replicas"] == 1
    else:
        assert loki["commonConfig"]["replication_factor"] == 3
    assert FAKE_SECRET not in (out / "loki-values.yml").read_text()


def test_alloy_promotes_only_low_cardinality_labels(rendered) -> None:
    _, out = rendered
    text = (out / "config.alloy").read_text()
    assert load(out / "alloy-values.yml")["alloy"]["configMap"]["content"] == text
    pipeline = parse(text)
    assert pipeline.problems == []
    assert {"discovery.kubernetes.pods", "loki.process.pod_logs", "loki.write.default"} <= pipeline.components
    assert set(pipeline.label_keep) == PROMOTED
    assert pipeline.labels <= PROMOTED
    assert {"request_id", "trace_id"} <= pipeline.structured_metadata
    assert "loki/api/v1/push" in text and "stage.json" in text and "stage.cri" in text


def test_alloy_check_finds_broken_pipelines() -> None:
    good = 'loki.write "default" {\n  endpoint { url = "http://x" }\n}\n'
    assert parse(good).problems == []
    assert parse(good + 'loki.process "p" { forward_to = [loki.write.other.receiver] }').problems
    assert parse('loki.write "default" {\n').problems
    bad = parse('loki.process "p" {\n stage.labels { values = { user_id = "" } }\n forward_to = []\n}')
    assert bad.labels == {"user_id"}
