"""The monitoring role rendered with each inventory's own values (render_inventory.yml: the
inventory's group_vars over the role's defaults, as in a run), and the pinned
kube-prometheus-stack archive rendered by the pinned Helm with those values."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_collections.todo.platform.plugins.module_utils.dapr_pubsub import DEFAULT_VERSION
from common import MONITORING, ROOT
from deploy.deploy_support import TEST_SECRETS

HERE = Path(__file__).parent
ENVS = ["kind", "minikube", "oke", "aks", "gke"]
#: Renders beside one per inventory: (inventory, environment variables over TEST_SECRETS).
VARIANTS = {"oke-without-domain": ("oke", {"TODO_OCI_DOMAIN": ""})}
CHART_VERSION = yaml.safe_load((MONITORING / "defaults" / "main.yml").read_text())["monitoring_chart_version"]


def charts_dir() -> Path:
    """The upstream chart archives of the test data (beside the CRDs: TODO_PLATFORM_CRDS_DIR/../charts)."""
    from testbed.kube import crds_dir

    return crds_dir().parent / "charts"


@pytest.fixture(scope="module")
def rendered_all(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("inventories")
    playbook = Path(sys.executable).with_name("ansible-playbook")
    env = dict(os.environ, **TEST_SECRETS, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    renders = {name: (name, {}) for name in ENVS} | VARIANTS
    procs = {
        name: subprocess.Popen(
            [
                str(playbook),
                str(HERE / "render_inventory.yml"),
                "-i",
                f"inventories/{inventory}",
                "-e",
                f"out={out / name}",
            ],
            cwd=ROOT,
            env=env | extra_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, (inventory, extra_env) in renders.items()
    }
    for name, proc in procs.items():
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}:\n{output[-4000:]}"
        assert "[WARNING]" not in output, output
    return out


@pytest.fixture(params=ENVS)
def rendered(request: pytest.FixtureRequest, rendered_all: Path) -> tuple[str, Path]:
    return request.param, rendered_all / request.param


def inventory_var(env: str, group: str, name: str):  # noqa: ANN201 - YAML of any shape
    path = ROOT / "inventories" / env / "group_vars" / "todo_platform" / f"{group}.yml"
    return yaml.safe_load(path.read_text())[name]


def helm_template(values: Path) -> list[dict]:
    from testbed import gobuild

    helm = gobuild.TOOLS["helm"].binary("helm")
    archive = charts_dir() / f"kube-prometheus-stack-{CHART_VERSION}.tgz"
    proc = subprocess.run(
        [
            str(helm),
            "template",
            "kube-prometheus-stack",
            str(archive),
            "--namespace",
            "monitoring",
            "--values",
            str(values),
            "--kube-version",
            gobuild.KUBERNETES_VERSION,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def test_grafana_is_recreated_not_rolled_because_its_volume_is_read_write_once(rendered) -> None:
    """A rolling update starts the new Grafana pod while the old one still holds the RWO volume;
    on another node the new pod never starts and the release never settles."""
    _, out = rendered
    objects = helm_template(out / "monitoring-values.yml")
    named = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    grafana = named["Deployment", "kube-prometheus-stack-grafana"]
    pvc = named["PersistentVolumeClaim", "kube-prometheus-stack-grafana"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    volumes = {v["name"]: v for v in grafana["spec"]["template"]["spec"]["volumes"]}
    assert volumes["storage"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert grafana["spec"]["strategy"] == {"type": "Recreate"}


def test_exporter_versions_are_the_collections_dapr_versions() -> None:
    internal = yaml.safe_load((MONITORING / "vars" / "main.yml").read_text())
    assert internal["_monitoring_kafka_versions"] == DEFAULT_VERSION


def test_kafka_exporter_announces_the_providers_kafka_version(rendered) -> None:
    """kafka_exporter is sarama-based like Dapr's client: Event Hubs answers only protocol 1.0.0."""
    env, out = rendered
    objects = yaml.safe_load((out / "kafka-exporter.yml").read_text())
    if inventory_var(env, "monitoring", "monitoring_kafka_exporter_mode") != "deployment":
        assert objects == []
        return
    (deploy,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    versions = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--kafka.version=")]
    provider = inventory_var(env, "kafka", "kafka_provider")
    assert versions == [DEFAULT_VERSION[provider]], (env, provider, container["args"])
    if env == "aks":
        assert versions == ["1.0.0"]


OCI_BOOTSTRAP = "cell-1.streaming.eu-frankfurt-1.oci.oraclecloud.com:9092"
#: The exporter's brokers and SASL sign-in per cloud render (defaults of the inventories,
#: TEST_SECRETS): the same provider formats the kafka role and the Dapr component use.
EXPORTER_SIGN_IN = {
    "oke": (
        OCI_BOOTSTRAP,
        "mytenancy/Default/todo-streaming/ocid1.streampool.oc1.eu-frankfurt-1.example",
        TEST_SECRETS["TODO_OCI_AUTH_TOKEN"],
    ),
    "oke-without-domain": (
        OCI_BOOTSTRAP,
        "mytenancy/todo-streaming/ocid1.streampool.oc1.eu-frankfurt-1.example",
        TEST_SECRETS["TODO_OCI_AUTH_TOKEN"],
    ),
    "aks": (
        "todo-events.servicebus.windows.net:9093",
        "$ConnectionString",
        TEST_SECRETS["TODO_EVENTHUBS_CONNECTION_STRING"],
    ),
}


@pytest.mark.parametrize("render", sorted(EXPORTER_SIGN_IN))
def test_kafka_exporter_signs_in_with_the_providers_user_name(rendered_all: Path, render: str) -> None:
    objects = yaml.safe_load((rendered_all / render / "kafka-exporter.yml").read_text())
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    decoded = {key: base64.b64decode(value or "").decode() for key, value in secret["data"].items()}
    (deploy,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    servers = [
        a.removeprefix("--kafka.server=") for a in container["args"] if a.startswith("--kafka.server=")
    ]
    assert (",".join(servers), decoded["username"], decoded["password"]) == EXPORTER_SIGN_IN[render]


@pytest.mark.parametrize("role", ["monitoring", "logging"])
def test_argument_specs_match_defaults(role: str) -> None:
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert sorted(options) == sorted(defaults)
    assert {name: options[name].get("default") for name in defaults} == defaults


METRICS_SERVER = {"kind": True, "minikube": True, "oke": True, "aks": False, "gke": False}


def test_metrics_server_is_installed_where_the_platform_has_none(rendered) -> None:
    """kind, minikube and OKE ship no metrics-server (HPAs read <unknown>); AKS and GKE run theirs."""
    env, out = rendered
    objects = yaml.safe_load((out / "metrics-server.yml").read_text())
    if not METRICS_SERVER[env]:
        assert objects == []
        return
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {
        ("APIService", "v1beta1.metrics.k8s.io"),
        ("ClusterRole", "system:aggregated-metrics-reader"),
        ("RoleBinding", "metrics-server-auth-reader"),
        ("Deployment", "metrics-server"),
        ("Service", "metrics-server"),
    } <= kinds
    (deploy,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("registry.k8s.io/metrics-server/metrics-server:v")
    # Only the local clusters' kubelets serve certificates that cannot be verified.
    assert ("--kubelet-insecure-tls" in container["args"]) == (env in ("kind", "minikube"))


PORT_FORWARD = re.compile(r"-n monitoring port-forward svc/([a-z0-9-]+) (?:\d+:)?(\d+)")


def test_docs_port_forward_to_services_the_chart_creates(rendered_all: Path) -> None:
    """Every `-n monitoring port-forward svc/<name> <local>:<port>` in the docs names a Service and
    port of the rendered kube-prometheus-stack (the kind guide once named a `grafana` Service)."""
    objects = helm_template(rendered_all / "kind" / "monitoring-values.yml")
    ports = {
        o["metadata"]["name"]: {str(p["port"]) for p in o["spec"]["ports"]}
        for o in objects
        if o["kind"] == "Service"
    }
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    named = [(doc.relative_to(ROOT), m) for doc in docs for m in PORT_FORWARD.findall(doc.read_text())]
    assert any(name == "kube-prometheus-stack-grafana" for _, (name, _) in named)
    wrong = [(str(doc), name, port) for doc, (name, port) in named if port not in ports.get(name, set())]
    assert wrong == [], f"no such Service/port in the chart: {wrong}; it has {sorted(ports)}"
