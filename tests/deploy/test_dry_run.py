"""For each inventory, everything the roles would apply is sent to the test bed's API server as a
server-side dry run (ansible-playbook --check: kubernetes.core and todo.platform modules dry-run
on the server), so a broken variable of any environment fails here, not in that cloud.

Only what needs the outside world is switched off: creating a local cluster, building the image,
charts (no chart repositories here) and probing a managed Kafka over the internet."""

from __future__ import annotations

import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from deploy_support import ENVIRONMENTS, NAMESPACES, TEST_INVENTORIES, crds_dir, inventory_dir, run, tool_env

pytestmark = [pytest.mark.testbed, pytest.mark.timeout(3600)]

SKIP_TAGS = "cluster_install,images_build,images_publish"

# Kept as small as possible: only what cannot run against this API server.
OVERRIDES = {
    "cluster_required_tools": [],
    "cluster_expected_node_provider_id": "",
    "crds_source": "local",
    "crds_local_dir": "{{ lookup('ansible.builtin.env', 'TODO_PLATFORM_CRDS_DIR') }}",
    "kafka_install_chart": False,
    "dapr_install_chart": False,
    "monitoring_install_chart": False,
    "logging_install_chart": False,
    "kafka_probe": False,
    # Topics of a managed Kafka go through its admin API over the internet.
    "kafka_manage_topics": "{{ kafka_provider == 'strimzi' }}",
}
# GKE's GCPBackendPolicy and HealthCheckPolicy CRDs are not among the upstream CRDs available here
# (the HealthCheckPolicy objects are checked by tests/unit/test_apps_exposure.py).
ENV_OVERRIDES = {"gke": {"apps_extra_manifests": [], "apps_gateway_health_check_policy": False}}


def _ensure_namespaces(kube) -> None:
    existing = kube.kubectl("get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}")
    names = set(existing.stdout.split())
    for ns in NAMESPACES:
        if ns not in names:
            kube.kubectl("create", "namespace", ns)


def _strimzi_ca_secret(kube, tmp_path) -> None:
    """What Strimzi's operator creates on GKE (TLS listener): the cluster CA certificate Secret."""

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cluster-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = tmp_path / "ca.crt"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kube.kubectl("-n", "kafka", "delete", "secret", "todo-kafka-cluster-ca-cert", "--ignore-not-found")
    kube.kubectl(
        "-n",
        "kafka",
        "create",
        "secret",
        "generic",
        "todo-kafka-cluster-ca-cert",
        f"--from-file=ca.crt={pem}",
    )


def dry_run(
    kube,
    env_name: str,
    tmp_path,
    extra: dict | None = None,
    *,
    tags: str | None = None,
    playbook: str = "site.yml",
    check: bool = True,
):
    overrides = {**OVERRIDES, **ENV_OVERRIDES.get(env_name, {}), **(extra or {})}
    overrides_file = tmp_path / f"overrides-{env_name}.json"
    overrides_file.write_text(json.dumps(overrides))
    env = tool_env(kube)
    args = [
        "ansible-playbook",
        playbook,
        "-i",
        str(inventory_dir(env_name)),
        "--skip-tags",
        SKIP_TAGS,
        "-e",
        f"@{overrides_file}",
        # The cloud inventories name their own contexts; here every one targets the test bed.
        "-e",
        f"cluster_kubeconfig={kube.kubeconfig}",
        "-e",
        f"cluster_context={kube.context}",
    ]
    if check:
        args += ["--check", "--diff"]
    if tags:
        args += ["--tags", tags]
    return run(args, env)


@pytest.fixture(scope="module")
def api(kube, tmp_path_factory):
    """The API server with the pinned CRDs applied once, for real, by the crds role. The CRDs are
    the same in every environment and the role records what it applied, so each dry run below
    finds them current and spends its time on the objects of its own environment. (Applying all
    46 CRDs took 84 s of every dry run when they were sent again each time.)"""
    _ensure_namespaces(kube)
    workdir = tmp_path_factory.mktemp("crds")
    # The GKE inventory names all four CRD sets (Gateway API included).
    result = dry_run(kube, "gke", workdir, playbook="playbooks/crds.yml", check=False)
    assert result.returncode == 0, f"crds role failed\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    return kube


@pytest.mark.parametrize("env_name", ENVIRONMENTS + TEST_INVENTORIES)
def test_inventory_renders_objects_the_api_server_accepts(api, env_name, tmp_path):
    if env_name in ("gke", "eks"):
        _strimzi_ca_secret(api, tmp_path)
    result = dry_run(api, env_name, tmp_path)
    tail = f"{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert result.returncode == 0, f"{env_name}: dry run failed\n{tail}"
    assert "failed=0" in result.stdout


def test_a_broken_cloud_variable_is_caught(api, tmp_path):
    """An impossible resource quantity in the OKE inventory is refused by the API server."""
    broken = {"apps_service_overrides": {"backend": {"resources": {"requests": {"cpu": "two"}}}}}
    result = dry_run(api, "oke", tmp_path, broken, tags="apps")
    assert result.returncode != 0
    assert "quantities must match" in result.stdout, result.stdout[-4000:]


def test_an_event_hubs_basic_tier_is_refused(api, tmp_path):
    """AKS wiring with a Basic-tier namespace (no Kafka endpoint) stops with a clear message."""
    basic = {
        "namespace": "todo-events",
        "tier": "basic",
        "connection_string": "Endpoint=sb://x/;SharedAccessKey=eA==",
    }
    result = dry_run(api, "aks", tmp_path, {"kafka_azure_event_hubs": basic}, tags="kafka,dapr")
    assert result.returncode != 0
    assert "basic" in result.stdout.lower(), result.stdout[-4000:]


def test_a_changed_local_crd_file_is_refused(api, tmp_path):
    """crds_source=local checks every file against its pinned sha256 and names the ones that differ."""
    import shutil

    local = tmp_path / "crds"
    shutil.copytree(crds_dir(), local)
    changed = sorted((local / "dapr").glob("*.yaml"))[0]
    changed.write_text(changed.read_text() + "\n# edited\n")
    result = dry_run(
        api,
        "kind",
        tmp_path,
        {"crds_local_dir": str(local)},
        tags="crds_preflight,crds_fetch",
        playbook="playbooks/crds.yml",
    )
    assert result.returncode != 0
    assert f"dapr/{changed.name}" in result.stdout, result.stdout[-4000:]
    assert "sha256 differs" in result.stdout
