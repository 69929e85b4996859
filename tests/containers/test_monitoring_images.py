"""The monitoring images built here (testbed.monitoring_images) are exactly the ones kube-prometheus-stack
runs on kind with Grafana off, plus the role's metrics-server; each starts under the security context it
gets there and reports the version its tag names.

The chart is the test data's kube-prometheus-stack at the role's pinned version, rendered with the
pinned helm and the values the monitoring role computes for the kind inventory
(tests/deploy/test_chart_render.py's stand-in role), ``grafana.enabled: false`` added (Grafana cannot
be built here).  Prometheus, Alertmanager and node_exporter also serve on loopback and report their
version over HTTP; the operator, the config reloader, kube-state-metrics, metrics-server and
kube-network-policies need a cluster to do more than that, and are checked there by the kind tests.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from testbed import gobuild, monitoring_images
from testbed.images import docker_run_cli as docker
from testbed.polling import eventually

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from test_chart_render import chart_archive, helm_template, release, render_role_values  # noqa: E402

pytestmark = pytest.mark.testbed

REPO = Path(__file__).resolve().parents[2]
#: images the chart renders that are not built here, and why (asserted, so this stays true)
NOT_BUILT = {
    # the admission webhook's certificate Jobs (helm hooks); the role leaves the webhook on
    "ghcr.io/jkroepke/kube-webhook-certgen:1.8.7": "the Go module proxy does not serve "
    "github.com/jkroepke/kube-webhook-certgen (403 'not available')",
}
#: images of the role's own templates and of NetworkPolicy enforcement, not of the chart
NOT_IN_CHART = {"metrics-server", "kube-network-policies"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> str:
    work = tmp_path_factory.mktemp("kube-prometheus-stack")
    rel = release(render_role_values(work, ["kind"]), "kind", "kube-prometheus-stack")
    rel["values"].setdefault("grafana", {})["enabled"] = False
    archive = chart_archive("kube-prometheus-stack", rel["chart_version"])
    return helm_template(gobuild.TOOLS["helm"].binary(), rel, archive, [], work)


def test_every_image_the_chart_runs_is_one_we_build(rendered):
    in_chart = {s.ref for s in monitoring_images.SPECS if s.name not in NOT_IN_CHART}
    assert monitoring_images.chart_image_refs(rendered) - set(NOT_BUILT) == in_chart
    assert set(NOT_BUILT) <= monitoring_images.chart_image_refs(rendered)


def test_metrics_server_image_is_the_roles():
    defaults = yaml.safe_load((REPO / "roles/monitoring/defaults/main.yml").read_text())
    kind = yaml.safe_load((REPO / "inventories/kind/group_vars/todo_platform/monitoring.yml").read_text())
    assert "monitoring_metrics_server_image" not in kind
    assert defaults["monitoring_metrics_server_image"] == monitoring_images.spec("metrics-server").ref


# --------------------------------------------------------------------------------------------------
# The security context each image gets


def _pod_securities(rendered: str) -> dict[str, tuple[dict, dict]]:
    """Image -> (pod security context, container security context) as the chart renders them; the
    operator's Prometheus/Alertmanager pods get the resource's own, and so does the config reloader
    the operator adds to the Prometheus pod."""
    found: dict[str, tuple[dict, dict]] = {}
    reloaders: list[str] = []
    prometheus_context: dict = {}
    for obj in yaml.safe_load_all(rendered):
        if not isinstance(obj, dict):
            continue
        spec = obj.get("spec") or {}
        if obj["kind"] in monitoring_images.OPERATED_KINDS:
            found[spec["image"]] = (spec["securityContext"], {})
            if obj["kind"] == "Prometheus":
                prometheus_context = spec["securityContext"]
            continue
        pod = (spec.get("template") or {}).get("spec") or {}
        for container in pod.get("containers") or []:
            found[container["image"]] = (
                pod.get("securityContext") or {},
                container.get("securityContext") or {},
            )
            flag = monitoring_images.RELOADER_FLAG
            reloaders += [
                arg.removeprefix(flag) for arg in container.get("args") or [] if arg.startswith(flag)
            ]
    for reloader in reloaders:
        found[reloader] = (prometheus_context, {})
    return found


#: the role's metrics-server Deployment (roles/monitoring/templates/metrics-server.yml.j2)
METRICS_SERVER_USER = "1000"


def docker_security(rendered: str, spec: monitoring_images.Spec) -> list[str]:
    """``docker run`` options for what the pod gets: its user and group, a read-only root file system,
    no capabilities, no privilege escalation."""
    common = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    if spec.name == "metrics-server":
        return [*common, "--user", METRICS_SERVER_USER]
    if spec.name == "kube-network-policies":
        return common  # root, as upstream's DaemonSet (which adds NET_ADMIN for nftables)
    pod, container = _pod_securities(rendered)[spec.ref]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, spec.ref
    if container:
        assert container["readOnlyRootFilesystem"] is True, spec.ref
    return [*common, "--user", f"{pod['runAsUser']}:{pod.get('runAsGroup', pod['runAsUser'])}"]


# --------------------------------------------------------------------------------------------------
# The images in the test bed's Docker


@pytest.fixture(scope="module")
def loaded(docker_engine) -> list[str]:
    started = time.monotonic()
    refs = monitoring_images.load_into_docker(docker_engine.host)
    print(f"\nmonitoring images built/loaded in {time.monotonic() - started:.0f} s: {refs}")
    return refs


def test_images_are_loaded_under_their_upstream_names(docker_engine, loaded):
    assert loaded == monitoring_images.image_refs()
    for spec in monitoring_images.SPECS:
        config = json.loads(docker(docker_engine.host, "image", "inspect", spec.ref).stdout)[0]["Config"]
        assert config["User"] == (f"{spec.user}:{spec.user}" if spec.user is not None else ""), spec.ref
        assert config["Labels"]["org.opencontainers.image.version"] == spec.version


#: what the version flag prints first, per image (upstream's wording, the version the tag names)
VERSION_LINES = {
    "prometheus-operator": r"prometheus-operator, version 0\.93\.1 ",
    "prometheus-config-reloader": r"prometheus-config-reloader, version 0\.93\.1 ",
    "prometheus": r"prometheus, version 3\.14\.0 ",
    "alertmanager": r"alertmanager, version 0\.34\.0 ",
    "kube-state-metrics": r"kube-state-metrics, version v2\.20\.0 ",
    "node-exporter": r"node_exporter, version 1\.12\.1 ",
    "metrics-server": r"v0\.8\.0$",
}
#: kube-state-metrics has a ``version`` subcommand instead of the flag
VERSION_ARGS = {"kube-state-metrics": ["version"]}


@pytest.mark.parametrize("name", sorted(VERSION_LINES))
def test_each_image_reports_its_version_as_its_pod_runs_it(docker_engine, loaded, rendered, name):
    spec = monitoring_images.spec(name)
    options = docker_security(rendered, spec)
    args = VERSION_ARGS.get(name, ["--version"])
    done = docker(
        docker_engine.host, "run", "--rm", "--network", "none", *options,
        "--entrypoint", f"/{spec.path}", spec.ref, *args,
    )  # fmt: skip
    first = (done.stdout + done.stderr).strip().splitlines()[0]
    assert re.match(VERSION_LINES[name], first), f"{spec.ref} {args}: {done.stdout}{done.stderr}"


def test_kube_network_policies_binary_is_the_release(docker_engine, loaded, tmp_path):
    """netpol has no version flag: its Go build information names the main module at the tag's version."""
    spec = monitoring_images.spec("kube-network-policies")
    container = docker(docker_engine.host, "create", spec.ref).stdout.strip()
    try:
        docker(docker_engine.host, "cp", f"{container}:/{spec.path}", str(tmp_path / "netpol"))
    finally:
        docker(docker_engine.host, "rm", container, check=False)
    info = subprocess.run(
        [gobuild.go_binary(), "version", "-m", str(tmp_path / "netpol")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert re.search(rf"\tmod\tsigs\.k8s\.io/kube-network-policies\t{re.escape(spec.version)}\t", info), info
    # and it starts under the security context given (no network namespace: it fails on netlink, not
    # on the image: a usage or a permission message from the program itself)
    done = docker(
        docker_engine.host,
        "run",
        "--rm",
        *docker_security("", spec),
        spec.ref,
        "/bin/netpol",
        "--help",
        check=False,
    )
    assert "Usage" in done.stdout + done.stderr, done.stdout + done.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(host: str, rendered: str, name: str, *args: str, data_dir: str | None = None) -> tuple[str, int]:
    """Start image ``name`` on the host network, listening on a free loopback port, under its pod's
    security context (a tmpfs where the pod mounts its volume); return the container and port."""
    spec = monitoring_images.spec(name)
    port = _free_port()
    container = f"monitoring-image-{name}-{os.getpid()}"
    volume = (
        ["--tmpfs", f"{data_dir}:uid={docker_security(rendered, spec)[-1].split(':')[0]}"] if data_dir else []
    )
    docker(
        host,
        "run",
        "-d",
        "--name",
        container,
        "--network",
        "host",
        *docker_security(rendered, spec),
        *volume,
        spec.ref,
        *args,
        f"--web.listen-address=127.0.0.1:{port}",
    )
    return container, port


def _get(url: str, container: str, host: str) -> httpx.Response:
    def answered() -> httpx.Response:
        reply = httpx.get(url, timeout=5)
        assert reply.status_code == 200, f"HTTP {reply.status_code}: {reply.text[:500]}"
        return reply

    try:
        return eventually(
            answered, f"{url} answering 200", within=90, interval=1, ignoring=(httpx.TransportError,)
        )
    except AssertionError as timeout:
        logs = docker(host, "logs", container, check=False)
        raise AssertionError(
            f"{timeout}; container log: {logs.stdout[-2000:]}{logs.stderr[-2000:]}"
        ) from None


def test_prometheus_serves_its_api_and_reports_its_version(docker_engine, loaded, rendered):
    container, port = _serve(
        docker_engine.host,
        rendered,
        "prometheus",
        "--config.file=/etc/prometheus/prometheus.yml",
        "--storage.tsdb.path=/prometheus",
        data_dir="/prometheus",
    )
    try:
        info = _get(f"http://127.0.0.1:{port}/api/v1/status/buildinfo", container, docker_engine.host).json()
        assert info["data"]["version"] == "3.14.0"
        _get(f"http://127.0.0.1:{port}/-/ready", container, docker_engine.host)
    finally:
        docker(docker_engine.host, "rm", "-f", container, check=False)


def test_alertmanager_serves_its_api_and_reports_its_version(docker_engine, loaded, rendered):
    container, port = _serve(
        docker_engine.host,
        rendered,
        "alertmanager",
        "--config.file=/etc/alertmanager/alertmanager.yml",
        "--storage.path=/alertmanager",
        "--cluster.listen-address=",
        data_dir="/alertmanager",
    )
    try:
        status = _get(f"http://127.0.0.1:{port}/api/v2/status", container, docker_engine.host).json()
        assert status["versionInfo"]["version"] == "0.34.0"
    finally:
        docker(docker_engine.host, "rm", "-f", container, check=False)


def test_node_exporter_serves_metrics_with_its_version(docker_engine, loaded, rendered):
    container, port = _serve(docker_engine.host, rendered, "node-exporter")
    try:
        metrics = _get(f"http://127.0.0.1:{port}/metrics", container, docker_engine.host).text
        assert re.search(r'^node_exporter_build_info\{[^}]*version="1\.12\.1"', metrics, re.M), metrics[:2000]
    finally:
        docker(docker_engine.host, "rm", "-f", container, check=False)
