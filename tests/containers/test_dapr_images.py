"""The Dapr images built here (testbed.dapr_images) are exactly the ones the Dapr chart runs, and each
starts under the chart's security context and reports the version its tag names.

The chart is the upstream archive of the test data (dapr-1.18.2, the version the Go module proxy
builds), rendered with the pinned helm and the values the dapr role computes for the kind inventory
(tests/deploy/test_chart_render.py's stand-in role), with ``dapr_chart_version: 1.18.2`` as the kind
scenario sets it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from testbed import dapr_images
from testbed.images import docker_run_cli as docker
from testbed.polling import eventually

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from test_chart_render import chart_archive, helm_template, release, render_role_values  # noqa: E402

pytestmark = pytest.mark.testbed

MIRROR = "registry.example.internal:5000/mirror/dapr"


@pytest.fixture(scope="module")
def helm() -> Path:
    from testbed import gobuild

    return gobuild.TOOLS["helm"].binary()


def render_dapr_chart(helm: Path, work: Path, **extra_vars: str) -> str:
    """The Dapr chart of dapr_images.VERSION rendered with the dapr role's values for kind."""
    extra = {"dapr_chart_version": dapr_images.VERSION, **extra_vars}
    values = render_role_values(work, ["kind"], extra_vars=extra)
    rel = release(values, "kind", "dapr")
    assert rel["chart_version"] == dapr_images.VERSION
    return helm_template(helm, rel, chart_archive("dapr", dapr_images.VERSION), [], work)


@pytest.fixture(scope="module")
def rendered(helm, tmp_path_factory) -> dict[str, str]:
    """The chart rendered with the role's defaults and with dapr_image_registry set to a mirror (the two
    Ansible runs in parallel)."""
    variants = {"upstream": {}, "mirror": {"dapr_image_registry": MIRROR}}
    with ThreadPoolExecutor(len(variants)) as pool:
        futures = {
            name: pool.submit(render_dapr_chart, helm, tmp_path_factory.mktemp(name), **extra)
            for name, extra in variants.items()
        }
        return {name: future.result() for name, future in futures.items()}


def test_every_image_the_chart_runs_is_one_we_build(rendered):
    assert dapr_images.chart_image_refs(rendered["upstream"]) == set(dapr_images.image_refs())
    # the upstream names, spelled out, so a change of the chart's naming is seen here
    assert sorted(dapr_images.image_refs()) == [
        f"ghcr.io/dapr/{name}:1.18.2"
        for name in ("daprd", "injector", "operator", "placement", "scheduler", "sentry")
    ]


def test_dapr_image_registry_points_every_image_at_a_mirror(rendered):
    assert dapr_images.chart_image_refs(rendered["mirror"]) == set(dapr_images.image_refs(MIRROR))


# --------------------------------------------------------------------------------------------------
# The images in the test bed's Docker


@pytest.fixture(scope="module")
def loaded(docker_engine) -> list[str]:
    started = time.monotonic()
    refs = dapr_images.load_into_docker(docker_engine.host)
    print(f"\nDapr images built/loaded in {time.monotonic() - started:.0f} s: {refs}")
    return refs


#: what the chart sets on every control-plane container, and the injector on daprd (with
#: sidecarDropALLCapabilities and sidecarRunAsNonRoot, roles/dapr/vars/main.yml): no user given, so
#: the image's own must be non-root and numeric for runAsNonRoot
CHART_SECURITY = ("--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")


def test_images_are_loaded_under_their_upstream_names_as_non_root(docker_engine, loaded):
    assert loaded == dapr_images.image_refs()
    for ref in loaded:
        config = json.loads(docker(docker_engine.host, "image", "inspect", ref).stdout)[0]["Config"]
        assert config["User"] == "65532:65532", ref
        assert config["Labels"]["org.opencontainers.image.version"] == "1.18.2"


def test_daprd_reports_its_version(docker_engine, loaded):
    ref = dapr_images.image_refs()[dapr_images.NAMES.index("daprd")]
    done = docker(
        docker_engine.host, "run", "--rm", "--network", "none", *CHART_SECURITY, ref, "/daprd", "--version"
    )
    assert done.stdout.strip() == "1.18.2"


def start(host: str, name: str, *args: str) -> str:
    """Run image ``name`` with the chart's security context and no network; return the container."""
    ref = dapr_images.image_refs()[dapr_images.NAMES.index(name)]
    container = f"dapr-image-{name}-{os.getpid()}"
    docker(
        host, "run", "-d", "--name", container, "--network", "none", *CHART_SECURITY, ref, f"/{name}", *args
    )
    return container


def json_log(host: str, container: str, until: str) -> list[dict]:
    """The container's JSON log lines, once one of them has ``until`` in its message."""

    def logged() -> list[dict]:
        logs = docker(host, "logs", container)
        lines = [
            json.loads(line) for line in (logs.stdout + logs.stderr).splitlines() if line.startswith("{")
        ]
        assert any(until in entry.get("msg", "") for entry in lines), f"{container} logged {lines}"
        return lines

    return eventually(logged, f"{until!r} in {container}'s log", within=60, interval=1)


@pytest.mark.parametrize("name", dapr_images.NAMES)
def test_each_image_starts_under_the_charts_security_context(docker_engine, loaded, name):
    """Each program starts and logs its start line with its version, as JSON like the chart asks (then,
    without a cluster, most stop with a configuration error; placement keeps running)."""
    container = start(docker_engine.host, name, "--log-as-json")
    try:
        lines = json_log(docker_engine.host, container, until="-- version")
        starts = [entry for entry in lines if entry.get("msg", "").startswith("Starting Dapr")]
        assert starts, f"{name}: no start line in its log: {lines}"
        assert "-- version 1.18.2 --" in starts[0]["msg"]
        assert all(entry["ver"] == "1.18.2" for entry in lines)
    finally:
        docker(docker_engine.host, "rm", "-f", container, check=False)


def test_placement_serves_as_the_images_non_root_user(docker_engine, loaded):
    """Placement runs on without a cluster: its process has the image's user, 65532."""
    container = start(docker_engine.host, "placement", "--log-as-json")
    try:
        lines = json_log(docker_engine.host, container, until="Running Placement gRPC server")
        assert any("Running Placement gRPC server" in entry.get("msg", "") for entry in lines), lines
        top = docker(docker_engine.host, "top", container, "-o", "pid,uid")
        assert [row.split()[1] for row in top.stdout.splitlines()[1:]] == ["65532"]
    finally:
        docker(docker_engine.host, "rm", "-f", container, check=False)
