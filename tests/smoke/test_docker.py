"""The test bed's Docker engine: builds without a registry, runs privileged containers on this VM."""

import os
import shutil
import subprocess
import uuid

import pytest
from testbed.core import Run
from testbed.docker import RUNTIME, Docker, mounts_under
from testbed.images import ensure_base_image
from testbed.oci_runtime_wrapper import bounding_set, missing_caps

pytestmark = pytest.mark.testbed


def _docker(host: str, *args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
    docker = shutil.which("docker")
    assert docker, "docker CLI missing: apt-get install -y docker.io"
    done = subprocess.run(
        [docker, *args],
        env=os.environ | {"DOCKER_HOST": host, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


@pytest.fixture(scope="module")
def base_image(docker_engine) -> str:
    """The Debian python3 base (debootstrap, cached tarball) imported into the engine."""
    return ensure_base_image(docker_engine.host, "python3")


def test_build_an_image_without_a_registry(docker_engine, tmp_path):
    env_host = docker_engine.host
    marker = uuid.uuid4().hex
    (tmp_path / "marker.txt").write_text(marker)
    (tmp_path / "Dockerfile").write_text(f"FROM scratch\nCOPY marker.txt /marker.txt\nLABEL smoke={marker}\n")
    tag = f"testbed-smoke:{marker[:12]}"
    _docker(env_host, "build", "--network", "host", "-t", tag, str(tmp_path), check=True)
    try:
        label = _docker(
            env_host, "image", "inspect", "-f", '{{ index .Config.Labels "smoke" }}', tag, check=True
        )
        assert label.stdout.strip() == marker
    finally:
        _docker(env_host, "image", "rm", "-f", tag)


def test_default_runtime_is_the_capability_wrapper(docker_engine):
    info = _docker(docker_engine.host, "info", "--format", "{{.DefaultRuntime}}", check=True)
    assert info.stdout.strip() == RUNTIME


def test_base_image_runs_python(docker_engine, base_image):
    code = (
        "import os, sys; print(1, sys.version_info >= (3, 11), os.path.isfile(os.environ['SSL_CERT_FILE']))"
    )
    done = _docker(docker_engine.host, "run", "--rm", "--network", "none", base_image, "python3", "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "True", "True"], done.stdout


def test_base_image_trusts_what_the_host_trusts(docker_engine, base_image):
    """HTTPS to the package index works inside a container (on machines behind a TLS-intercepting
    proxy only because the image carries the host's CA bundle)."""
    url = "https://pypi.org/simple/pip/"
    code = f"import urllib.request; print(urllib.request.urlopen('{url}', timeout=30).status)"
    done = _docker(docker_engine.host, "run", "--rm", "--network", "host", base_image, "python3", "-c", code)
    assert done.returncode == 0 and done.stdout.strip() == "200", done.stdout + done.stderr[-1500:]


def test_privileged_container_starts_and_takes_exec(docker_engine, base_image):
    name = f"tb-priv-{uuid.uuid4().hex[:8]}"
    host = docker_engine.host
    _docker(
        host,
        "run",
        "-d",
        "--privileged",
        "--network",
        "none",
        "--name",
        name,
        base_image,
        "sleep",
        "300",
        check=True,
    )
    try:
        done = _docker(host, "exec", name, "grep", "^CapEff:", "/proc/self/status", check=True)
        effective = int(done.stdout.split()[1], 16)
        # every capability the machine can grant, none it cannot
        assert effective == bounding_set() & effective
        assert effective & (1 << 21), "a privileged container holds CAP_SYS_ADMIN"
        done = _docker(host, "exec", "--privileged", name, "true")
        assert done.returncode == 0, done.stderr
    finally:
        _docker(host, "rm", "-f", name)


def test_plain_runc_is_what_the_wrapper_is_for(docker_engine, base_image):
    """Without the wrapper (Docker's own ``runc`` runtime) a privileged container fails on a machine whose
    bounding set lacks a capability, with the message the wrapper exists for; on other machines it runs."""
    done = _docker(
        docker_engine.host,
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--privileged",
        "--network",
        "none",
        base_image,
        "true",
    )
    if missing_caps(bounding_set()):
        assert done.returncode != 0
        assert "unable to apply caps: operation not permitted" in done.stderr, done.stderr
    else:
        assert done.returncode == 0, done.stderr


def test_destroy_leaves_no_mount_and_no_directory():
    """dockerd keeps its network namespace bind-mounted under its exec root; destroy() detaches it so
    the run directory goes away (one stale mount per session otherwise)."""
    run = Run(f"docker-destroy-{uuid.uuid4().hex[:8]}")
    engine = Docker(run)
    try:
        engine.start()
        rundir = engine.rundir
        assert rundir is not None
        # a container on the host network makes dockerd bind-mount exec/netns/default
        image = ensure_base_image(engine.host, "python3")
        _docker(engine.host, "run", "--rm", "--network", "host", image, "true", check=True)
        assert mounts_under(rundir), "dockerd did not mount anything under its exec root"
    finally:
        engine.destroy()
        run.remove_data()
    assert mounts_under(rundir) == []
    assert not rundir.exists()


def test_destroy_takes_its_networks_bridges_off_the_host():
    """A stopped engine leaves each network's bridge (and an attached container's veth) on the host;
    destroy() removes containers and networks first, so sessions do not use up the address pools."""
    run = Run(f"docker-net-{uuid.uuid4().hex[:8]}")
    engine = Docker(run)
    try:
        engine.start()
        net = _docker(
            engine.host, "network", "create", f"leak-{uuid.uuid4().hex[:6]}", check=True
        ).stdout.strip()
        image = ensure_base_image(engine.host, "python3")
        _docker(engine.host, "run", "-d", "--network", net, image, "sleep", "600", check=True)
        bridge = f"br-{net[:12]}"
        assert _link_exists(bridge), f"Docker made no bridge {bridge} for its network"
    finally:
        engine.destroy()
        run.remove_data()
    assert not _link_exists(bridge), f"{bridge} is still on the host after destroy()"


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True, check=False).returncode == 0
