"""Optional: a Docker engine (dockerd from Debian's ``docker.io``) of the test bed's own.

Not part of a plain ``testbed up``; start it with ``testbed up docker``.  It keeps its data, exec root
and socket under the test bed's directory, so it never touches a system-wide Docker engine.  Clients
use ``DOCKER_HOST`` from ``testbed env`` (``TESTBED_DOCKER_HOST``).  Images cannot be pulled on
machines without a container registry; build them from a locally made base instead
(:mod:`testbed.images`).

Its default runtime is ``testbed-runc``: :mod:`testbed.oci_runtime_wrapper` in front of Debian's runc,
which leaves out of each container's capability lists those this machine's bounding set lacks, so
``docker run --privileged`` and ``docker exec`` into such a container work on VMs that withhold a
capability (without it runc fails with "unable to apply caps: operation not permitted").  Plain
``runc`` stays available as ``--runtime runc``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from testbed.core import (
    Component,
    MissingTool,
    Run,
    apt_install,
    kill_group,
    log,
    register,
    register_tool,
    require_tool,
)

HOW = "install Debian's Docker engine as root: apt-get install -y docker.io"

#: name of the default runtime of the test bed's dockerd (the capability-filtering runc wrapper)
RUNTIME = "testbed-runc"
WRAPPER = Path(__file__).with_name("oci_runtime_wrapper.py")


def _find() -> str | None:
    return shutil.which("dockerd") or ("/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").is_file() else None)


def ensure_tool() -> str:
    """dockerd; installs Debian's docker.io when missing and we are root (it needs root anyway)."""
    if os.geteuid() != 0:
        raise MissingTool("dockerd (needs root)", "run the test bed as root, or " + HOW)
    dockerd = _find()
    if not dockerd:
        apt_install("docker.io", "dockerd", HOW)
        dockerd = _find()
    if not dockerd:
        raise MissingTool("dockerd", HOW)
    return dockerd


def runtime_launcher(directory: Path) -> Path:
    """Write the executable dockerd registers as its default runtime: the wrapper in front of runc."""
    runc = require_tool(
        "runc", "apt-get install -y runc (Debian's docker.io depends on it)", ["/usr/sbin/runc"]
    )
    launcher = directory / RUNTIME
    launcher.write_text(
        "#!/bin/sh\n"
        f'exec {shlex.quote(sys.executable)} -S -E {shlex.quote(str(WRAPPER))} {shlex.quote(runc)} "$@"\n'
    )
    launcher.chmod(0o755)
    return launcher


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first (from /proc/self/mountinfo)."""
    root = str(path.resolve())
    found = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as handle:
        for line in handle:
            # field 5 is the mount point, with spaces and the like octal-escaped
            point = line.split()[4].encode().decode("unicode_escape")
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def unmount_under(path: Path) -> None:
    """Detach every mount below ``path`` (``umount --lazy``), so the directory can be removed."""
    umount = shutil.which("umount") or "/bin/umount"
    for point in mounts_under(path):
        subprocess.run([umount, "--lazy", point], capture_output=True, check=False)


@register("docker", default=False, order=60)
class Docker(Component):
    name = "docker"
    start_timeout = 90.0

    def __init__(self, run: Run | None = None) -> None:
        super().__init__(run)
        self.rundir: Path | None = None

    @property
    def socket(self) -> Path:
        assert self.rundir is not None
        return self.rundir / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        dockerd = ensure_tool()
        if self.rundir is None:
            # unix socket paths are limited to 108 bytes: keep them short, outside the repo
            self.rundir = Path(tempfile.mkdtemp(prefix=f"tb-docker-{self.run.name}-"))
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        launcher = runtime_launcher(self.rundir)
        self.spawn(
            [
                dockerd,
                f"--host={self.host}",
                f"--data-root={data}",
                f"--exec-root={self.rundir / 'exec'}",
                f"--pidfile={self.rundir / 'docker.pid'}",
                # no bridge and no iptables rules: the host's network stays as it is; containers and
                # builds use --network host
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--userland-proxy=false",
                # if dockerd attaches to a system containerd, keep our objects apart from its own
                "--containerd-namespace=testbed",
                "--containerd-plugins-namespace=testbed-plugins",
                f"--add-runtime={RUNTIME}={launcher}",
                f"--default-runtime={RUNTIME}",
            ],
            env=os.environ | {"XDG_RUNTIME_DIR": str(self.rundir)},
        )
        self.wait_healthy()
        self.started()

    def stop(self) -> None:
        containerd = None
        if self.rundir is not None:
            pidfile = self.rundir / "exec" / "containerd" / "containerd.pid"
            with contextlib.suppress(OSError, ValueError):
                containerd = int(pidfile.read_text().strip())
        super().stop()
        # dockerd runs containerd in a process group of its own; it normally stops it itself
        if containerd is not None:
            kill_group(containerd, timeout=10)

    def _remove_networks(self) -> None:
        """Remove every container and user-defined network while the engine still runs: a stopped
        engine leaves its networks' bridges (and any attached veth) on the host, and once Docker's
        address pools are used up by such leftovers no later session can create a network."""
        import httpx

        from testbed.images import docker_run_cli

        try:
            if not self.is_healthy():
                return
        except (OSError, httpx.HTTPError):
            return  # not running: nothing to remove through it
        containers = docker_run_cli(self.host, "ps", "-aq", timeout=60).stdout.split()
        if containers:
            docker_run_cli(self.host, "rm", "-f", *containers, timeout=300)
        docker_run_cli(self.host, "network", "prune", "-f", timeout=120)

    def is_healthy(self) -> bool:
        import httpx

        transport = httpx.HTTPTransport(uds=str(self.socket))
        with httpx.Client(transport=transport, timeout=3) as client:
            return client.get("http://docker/_ping").text == "OK"

    def info(self) -> dict[str, Any]:
        return {"host": self.host, "rundir": str(self.rundir) if self.rundir else None}

    def env(self) -> dict[str, str]:
        return {"TESTBED_DOCKER_HOST": self.host}

    @classmethod
    def restore(cls, run: Run, info: dict[str, Any]) -> Docker:
        comp = cls(run)
        comp.rundir = Path(info["rundir"]) if info.get("rundir") else None
        return comp

    def destroy(self) -> None:
        try:
            self._remove_networks()
        except (AssertionError, OSError, subprocess.TimeoutExpired) as exc:
            # best effort: the engine still stops and its directories still go
            log(f"docker: could not remove its containers and networks before stopping: {exc}")
        self.stop()
        if self.rundir is not None:
            # dockerd leaves its network namespace bind-mounted (exec/netns/default) when it stops
            unmount_under(self.rundir)
            shutil.rmtree(self.rundir, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _python_base_tarball() -> Path:
    from testbed.images import ensure_tarball

    return ensure_tarball("python3")


# The debootstrap of the python3 base (minutes on a cold machine) can run with the other tool builds.
register_tool("debian-python3", _python_base_tarball)
