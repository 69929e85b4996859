"""Pinned, reproducible builds of the Go tools of the test bed (and of the operator tools).

Every tool is built from a *wrapper module* committed under ``tests/testbed/gomod/<dir>/``: a tiny
``go.mod`` that requires the upstream module at one exact version (as a ``tool`` dependency), copies
the upstream top-level ``replace`` directives where they matter (the go command ignores replace lines
of dependencies, which is why a plain ``go install mod/cmd/x@v`` fails for Kubernetes and Dapr), and
a ``go.sum`` that fixes every byte of every dependency.  Builds run with ``-mod=readonly``, so a build
never silently re-resolves a dependency.  The CoreDNS wrapper also holds the main package that is built
(``main.go``: upstream's ``coremain`` with only the plugins our clusters' Corefile uses).

Binaries land in the versioned tool cache (see :func:`testbed.core.ensure_cached`)::

    ${TODO_PLATFORM_CACHE:-~/.cache/todo-platform}/<tool>-<version>-<content key>/bin/<binary>

and are reused from there.  ``GOMODCACHE``/``GOCACHE`` keep their defaults (``~/go/pkg/mod`` and
``~/.cache/go-build``) so a CI cache of those directories speeds up a cold build.

Builds are lean: ``CGO_ENABLED=0``, ``-trimpath``, ``-ldflags "-s -w"`` (no symbol tables), no race
detector, and one ``go build`` per tool even when it produces several binaries (shared compile work).
Each build records how long it took in ``build.json`` next to ``bin/``.

Command line (used by ``scripts/tools`` and handy by hand)::

    python -m testbed.gobuild list
    python -m testbed.gobuild build kubernetes dapr-control-plane kwok etcd
    python -m testbed.gobuild path kubernetes
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from testbed.core import (
    ComponentError,
    MissingTool,
    cache_dir,
    ensure_cached,
    log,
    register_tool,
)

GOMOD_DIR = Path(__file__).resolve().parent / "gomod"

GO_HOW = (
    "install Go 1.26 or newer (https://go.dev/dl/, or your distribution's golang package) "
    "and make sure `go` is on PATH"
)


@dataclass(frozen=True)
class GoTool:
    """One pinned tool built from a wrapper module.

    ``name``/``version`` name the cache directory; ``module_dir`` is the wrapper module under
    ``tests/testbed/gomod``; ``packages`` are the main packages built (one binary each, named after
    the last path element unless ``rename`` says otherwise).
    """

    name: str
    version: str
    module_dir: str
    #: the upstream module the wrapper requires at ``version``
    module: str
    packages: tuple[str, ...]
    ldflags: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    rename: dict[str, str] = field(default_factory=dict)
    #: what this tool is for, shown by ``scripts/tools list``
    purpose: str = ""
    #: files upstream's release build generates before ``go build`` and the module zip lacks
    #: (path in the upstream module: content); set, the build compiles a copy of the upstream
    #: module from the module cache with these files added (a ``replace`` in a copy of the wrapper)
    generated: dict[str, str] = field(default_factory=dict)
    #: the version the wrapper requires of ``module`` when it is not ``version`` (Prometheus v3.14.0
    #: is the Go module github.com/prometheus/prometheus v0.314.0)
    module_version: str = ""

    @property
    def upstream_version(self) -> str:
        return self.module_version or self.version

    @property
    def binaries(self) -> list[str]:
        names = []
        for pkg in self.packages:
            base = pkg.rstrip("/").rsplit("/", 1)[-1]
            names.append(self.rename.get(base, base))
        return names

    @property
    def wrapper(self) -> Path:
        return GOMOD_DIR / self.module_dir

    def fingerprint(self) -> dict:
        """Everything that decides the binaries: the pins (wrapper go.mod/go.sum) and the build's
        settings. It keys the tool's cache directory and the images the binaries go into."""
        wrapper = self.wrapper
        key = {
            "version": self.version,
            "module_version": self.upstream_version,
            "packages": list(self.packages),
            "rename": self.rename,
            "ldflags": list(self.ldflags),
            "tags": list(self.tags),
            "generated": self.generated,
            "go.mod": hashlib.sha256((wrapper / "go.mod").read_bytes()).hexdigest(),
            "go.sum": hashlib.sha256((wrapper / "go.sum").read_bytes()).hexdigest(),
        }
        # a main package of the wrapper's own (CoreDNS's plugin choice); only then in the key, so
        # the keys of the tools without one stay what they were
        sources = sorted(wrapper.glob("*.go"))
        if sources:
            key["sources"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sources}
        return key

    @property
    def cache_version(self) -> str:
        """``<version>-<content key>``: a change of tags, ldflags or pins builds anew instead of
        reusing binaries built another way under the same version."""
        digest = hashlib.sha256(json.dumps(self.fingerprint(), sort_keys=True).encode()).hexdigest()
        return f"{self.version}-{digest[:12]}"

    @property
    def bin_dir(self) -> Path:
        return cache_dir(self.name, self.cache_version) / "bin"

    def is_built(self) -> bool:
        return (cache_dir(self.name, self.cache_version) / ".complete").exists()

    def binary(self, name: str | None = None) -> Path:
        """Path of one binary (building the tool first if it is not in the cache)."""
        name = name or self.binaries[0]
        if name not in self.binaries:
            raise KeyError(f"{self.name} builds {self.binaries}, not {name}")
        return ensure_built(self) / name


def _k8s_ldflags(version: str) -> tuple[str, ...]:
    """The version stamps Kubernetes' own build sets (hack/lib/version.sh); without them the
    binaries call themselves v0.0.0-master and kwokctl/Helm version checks go wrong."""
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    stamps = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "gitCommit": "0" * 40,
        "buildDate": "1970-01-01T00:00:00Z",
    }
    return tuple(f"-X {pkg}.{key}={value}" for key, value in stamps.items())


def _prometheus_common_ldflags(version: str) -> tuple[str, ...]:
    """The version stamps promu (.promu.yml) and prometheus-operator's Makefile set, so that
    ``--version`` prints the release (revision and build date fixed, as for Kubernetes)."""
    pkg = "github.com/prometheus/common/version"
    stamps = {
        "Version": version,
        "Revision": "unknown",
        "Branch": "HEAD",
        "BuildUser": "todo-platform-testbed",
        "BuildDate": "19700101-00:00:00",
    }
    return tuple(f"-X {pkg}.{key}={value}" for key, value in stamps.items())


KUBERNETES_VERSION = "v1.36.3"
DAPR_VERSION = "1.18.2"
#: the tool that builds daprd and the Dapr control plane (see its entry in TOOLS)
DAPR_TOOL = "dapr-control-plane"
KWOK_VERSION = "v0.8.0"
ETCD_VERSION = "v3.6.16"
#: containerd for a Kubernetes node built here (kubelet 1.36 needs containerd 2.x; Debian ships 1.6)
CONTAINERD_VERSION = "v2.2.9"
#: what kubeadm v1.36.3 deploys (cmd/kubeadm/app/constants: DefaultEtcdVersion "3.6.8-0", CoreDNSVersion)
KUBEADM_ETCD_VERSION = "v3.6.8"
COREDNS_VERSION = "v1.14.2"
#: crictl for the kind node image (the proxy serves v1.34.0 and v1.37.0; kind v0.33.0 uses v1.36.0)
CRI_TOOLS_VERSION = "v1.37.0"
#: the Alertmanager kube-prometheus-stack 88.5.3 deploys (its values.yaml image tag)
ALERTMANAGER_VERSION = "v0.34.0"
#: the rest of what kube-prometheus-stack 88.5.3 deploys (values.yaml image tags; Prometheus v3.x.y is
#: the Go module version v0.3xx.y), and what the monitoring role and NetworkPolicy enforcement on kind add
PROMETHEUS_OPERATOR_VERSION = "v0.93.1"
PROMETHEUS_VERSION = "v3.14.0"


def _prometheus_module_version(version: str) -> str:
    """Prometheus 3.x tags its Go module v0.3MM.P (v3.14.0 is v0.314.0)."""
    major, minor, patch = version.lstrip("v").split(".")
    return f"v0.{int(major)}{int(minor):02d}.{patch}"


KUBE_STATE_METRICS_VERSION = "v2.20.0"
NODE_EXPORTER_VERSION = "v1.12.1"
METRICS_SERVER_VERSION = "v0.8.0"
#: the latest release of sigs.k8s.io/kube-network-policies on the Go module proxy
KUBE_NETWORK_POLICIES_VERSION = "v0.8.0"
#: The deploy path's tools (kind, helm) are pinned once, in the file the cluster role's preflight
#: reads too, so the tool cache and the preflight agree by construction.
DEPLOY_TOOL_PINS = Path(__file__).resolve().parents[2] / "roles/cluster/files/tool-versions.yml"


def _deploy_tool_pin(name: str) -> str:
    return str(yaml.safe_load(DEPLOY_TOOL_PINS.read_text())[name]["version"])


KIND_VERSION = _deploy_tool_pin("kind")
HELM_VERSION = _deploy_tool_pin("helm")

TOOLS: dict[str, GoTool] = {
    t.name: t
    for t in (
        GoTool(
            name="kubernetes",
            version=KUBERNETES_VERSION,
            module_dir="kubernetes",
            module="k8s.io/kubernetes",
            packages=(
                "k8s.io/kubernetes/cmd/kube-apiserver",
                "k8s.io/kubernetes/cmd/kube-controller-manager",
                "k8s.io/kubernetes/cmd/kube-scheduler",
            ),
            ldflags=_k8s_ldflags(KUBERNETES_VERSION),
            purpose="kube-apiserver, kube-controller-manager, kube-scheduler for the kwok cluster",
        ),
        GoTool(
            # the one Dapr build: the six binaries of the chart's images (testbed.dapr_images) with
            # upstream's version stamps (buildinfo and the logger's "ver" field), and its daprd is
            # also the host sidecar (testbed.daprd). The name keeps the cache key it was built under.
            name=DAPR_TOOL,
            version=DAPR_VERSION,
            module_dir="daprd",
            module="github.com/dapr/dapr",
            packages=tuple(
                f"github.com/dapr/dapr/cmd/{cmd}"
                for cmd in ("daprd", "injector", "operator", "placement", "scheduler", "sentry")
            ),
            tags=("stablecomponents",),
            ldflags=(
                f"-X github.com/dapr/dapr/pkg/buildinfo.version={DAPR_VERSION}",
                f"-X github.com/dapr/kit/logger.DaprVersion={DAPR_VERSION}",
            ),
            purpose="daprd (host sidecar and image) and the Dapr control plane for the images",
        ),
        GoTool(
            name="kwok",
            version=KWOK_VERSION,
            module_dir="kwok",
            module="sigs.k8s.io/kwok",
            packages=("sigs.k8s.io/kwok/cmd/kwok", "sigs.k8s.io/kwok/cmd/kwokctl"),
            purpose="kwokctl (cluster from local binaries) and the kwok node/pod simulator",
        ),
        GoTool(
            name="etcd",
            version=ETCD_VERSION,
            module_dir="etcd",
            module="go.etcd.io/etcd/server/v3",
            packages=("go.etcd.io/etcd/server/v3",),
            rename={"v3": "etcd"},
            purpose="etcd for the kwok cluster",
        ),
        GoTool(
            name="kind",
            version=KIND_VERSION,
            module_dir="kind",
            module="sigs.k8s.io/kind",
            packages=("sigs.k8s.io/kind",),
            purpose="local Kubernetes in Docker for the deploy path (needs Docker and image pulls)",
        ),
        GoTool(
            name="helm",
            version=HELM_VERSION,
            module_dir="helm",
            module="helm.sh/helm/v3",
            packages=("helm.sh/helm/v3/cmd/helm",),
            ldflags=(f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",),
            purpose="Helm 3 for the deploy path (kubernetes.core 6.2 rejects Helm 4)",
        ),
        GoTool(
            name="containerd",
            version=CONTAINERD_VERSION,
            module_dir="containerd",
            module="github.com/containerd/containerd/v2",
            packages=(
                "github.com/containerd/containerd/v2/cmd/containerd",
                "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
                "github.com/containerd/containerd/v2/cmd/ctr",
            ),
            # the snapshotters that need cgo or host libraries are left out
            tags=("no_btrfs", "no_devmapper", "no_zfs"),
            ldflags=(f"-X github.com/containerd/containerd/v2/version.Version={CONTAINERD_VERSION}",),
            purpose="containerd 2, ctr and the runc shim for a Kubernetes node container (spike)",
        ),
        GoTool(
            name="kubelet",
            version=KUBERNETES_VERSION,
            module_dir="kubelet",
            module="k8s.io/kubernetes",
            packages=("k8s.io/kubernetes/cmd/kubelet",),
            ldflags=_k8s_ldflags(KUBERNETES_VERSION),
            purpose="kubelet for a Kubernetes node container (spike)",
        ),
        GoTool(
            name="kubernetes-node",
            version=KUBERNETES_VERSION,
            module_dir="kubernetes-node",
            module="k8s.io/kubernetes",
            packages=(
                "k8s.io/kubernetes/cmd/kubeadm",
                "k8s.io/kubernetes/cmd/kubectl",
                "k8s.io/kubernetes/cmd/kube-proxy",
            ),
            ldflags=_k8s_ldflags(KUBERNETES_VERSION),
            purpose="kubeadm, kubectl and kube-proxy for the kind node image",
        ),
        GoTool(
            name="etcd-kubeadm",
            version=KUBEADM_ETCD_VERSION,
            module_dir="etcd-kubeadm",
            module="go.etcd.io/etcd/server/v3",
            packages=("go.etcd.io/etcd/server/v3",),
            rename={"v3": "etcd"},
            purpose="the etcd kubeadm deploys, for the kind node image",
        ),
        GoTool(
            name="coredns",
            version=COREDNS_VERSION,
            module_dir="coredns",
            module="github.com/coredns/coredns",
            # CoreDNS at that version with only the plugins the clusters' Corefile uses: the
            # wrapper's own main package (gomod/coredns/main.go), CoreDNS's documented custom build,
            # as our Prometheus keeps only Kubernetes' service discovery; same image name and tag
            packages=("local/testbed/coredns",),
            purpose="the CoreDNS kubeadm deploys (its Corefile's plugins only), for the kind node image",
        ),
        GoTool(
            name="cri-tools",
            version=CRI_TOOLS_VERSION,
            module_dir="cri-tools",
            module="sigs.k8s.io/cri-tools",
            packages=("sigs.k8s.io/cri-tools/cmd/crictl",),
            purpose="crictl for the kind node image",
        ),
        GoTool(
            name="alertmanager",
            version=ALERTMANAGER_VERSION,
            module_dir="alertmanager",
            module="github.com/prometheus/alertmanager",
            packages=("github.com/prometheus/alertmanager/cmd/alertmanager",),
            ldflags=(f"-X github.com/prometheus/common/version.Version={ALERTMANAGER_VERSION.lstrip('v')}",),
            # ui/web.go embeds app/dist, which upstream builds with npm; the API needs no UI
            generated={"ui/app/dist/index.html": "<!doctype html><title>Alertmanager</title>\n"},
            purpose="Alertmanager for the alert delivery test (receivers the monitoring role renders)",
        ),
        GoTool(
            name="prometheus-operator",
            version=PROMETHEUS_OPERATOR_VERSION,
            module_dir="prometheus-operator",
            module="github.com/prometheus-operator/prometheus-operator",
            packages=(
                "github.com/prometheus-operator/prometheus-operator/cmd/operator",
                "github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader",
            ),
            ldflags=_prometheus_common_ldflags(PROMETHEUS_OPERATOR_VERSION.lstrip("v")),
            purpose="prometheus-operator and its config reloader for the monitoring images",
        ),
        GoTool(
            name="prometheus",
            version=PROMETHEUS_VERSION,
            module_dir="prometheus",
            module="github.com/prometheus/prometheus",
            module_version=_prometheus_module_version(PROMETHEUS_VERSION),
            packages=("github.com/prometheus/prometheus/cmd/prometheus",),
            # promu adds builtinassets too, which embeds the web UI upstream builds with npm (absent
            # from the module zip): without it the API and scraping work, the UI pages do not.
            # Service discovery: only Kubernetes' (what the operator's configuration uses; file, http
            # and static stay), by upstream's documented tags; the cloud SDKs make most of a cold build.
            tags=("netgo", "remove_all_sd", "enable_kubernetes_sd"),
            ldflags=_prometheus_common_ldflags(PROMETHEUS_VERSION.lstrip("v")),
            purpose="Prometheus (API and scraping, no web UI) for the monitoring images",
        ),
        GoTool(
            name="kube-state-metrics",
            version=KUBE_STATE_METRICS_VERSION,
            module_dir="kube-state-metrics",
            module="k8s.io/kube-state-metrics/v2",
            packages=("k8s.io/kube-state-metrics/v2",),
            rename={"v2": "kube-state-metrics"},
            # its Makefile also stamps the client-go version it was built with (the wrapper's go.mod)
            ldflags=(
                *_prometheus_common_ldflags(KUBE_STATE_METRICS_VERSION),
                "-X k8s.io/kube-state-metrics/v2/pkg/app.ClientGoVersion=v0.36.3",
            ),
            purpose="kube-state-metrics for the monitoring images",
        ),
        GoTool(
            name="node-exporter",
            version=NODE_EXPORTER_VERSION,
            module_dir="node-exporter",
            module="github.com/prometheus/node_exporter",
            packages=("github.com/prometheus/node_exporter",),
            ldflags=_prometheus_common_ldflags(NODE_EXPORTER_VERSION.lstrip("v")),
            purpose="node_exporter for the monitoring images (cgo collectors left out, as upstream's)",
        ),
        GoTool(
            name="metrics-server",
            version=METRICS_SERVER_VERSION,
            module_dir="metrics-server",
            module="sigs.k8s.io/metrics-server",
            packages=("sigs.k8s.io/metrics-server/cmd/metrics-server",),
            ldflags=(f"-X k8s.io/client-go/pkg/version.gitVersion={METRICS_SERVER_VERSION}",),
            purpose="metrics-server for the monitoring images (HPA on kind)",
        ),
        GoTool(
            name="kube-network-policies",
            version=KUBE_NETWORK_POLICIES_VERSION,
            module_dir="kube-network-policies",
            module="sigs.k8s.io/kube-network-policies",
            packages=("sigs.k8s.io/kube-network-policies/cmd",),
            rename={"cmd": "netpol"},
            purpose="kube-network-policies (NetworkPolicy enforcement on kind) for its image",
        ),
    )
}


def go_binary() -> str:
    found = shutil.which("go")
    if not found:
        raise MissingTool("go", GO_HOW)
    return found


def go_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a pinned build: no cgo, local toolchain unless the caller set one, the
    wrapper's go.sum is the authority (no re-resolution)."""
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env.setdefault("GOTOOLCHAIN", "local")
    flags = env.get("GOFLAGS", "").split()
    flags = [f for f in flags if not f.startswith("-mod=")] + ["-mod=readonly"]
    env["GOFLAGS"] = " ".join(flags)
    env.update(extra or {})
    return env


def build_command(tool: GoTool, out_dir: Path) -> list[str]:
    ldflags = " ".join(("-s", "-w", *tool.ldflags))
    cmd = [go_binary(), "build", "-trimpath", "-ldflags", ldflags]
    if tool.tags:
        cmd += ["-tags", ",".join(tool.tags)]
    if len(tool.packages) == 1:
        cmd += ["-o", str(out_dir / tool.binaries[0])]
    else:
        cmd += ["-o", str(out_dir) + "/"]
    return cmd + list(tool.packages)


def module_source(tool: GoTool | str) -> Path:
    """The source of a tool's upstream module at its pinned version in the Go module cache
    (downloaded and checked against the wrapper's go.sum when missing), without building it: the
    test bed reads files from it (kwok's stages, kind's node files, the pause program)."""
    if isinstance(tool, str):
        tool = TOOLS[tool]
    proc = subprocess.run(
        [go_binary(), "mod", "download", "-json", f"{tool.module}@{tool.upstream_version}"],
        cwd=tool.wrapper,
        env=go_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        return Path(json.loads(proc.stdout)["Dir"])
    except (ValueError, KeyError):
        raise ComponentError(
            f"go mod download {tool.module}@{tool.upstream_version} failed: {proc.stdout}{proc.stderr}"
        ) from None


def _module_with_generated_files(tool: GoTool, tmp: Path) -> Path:
    """A copy of the wrapper whose go.mod replaces the upstream module by a copy of its module
    cache directory with ``tool.generated`` added; the wrapper's go.sum still pins every
    dependency."""
    source = tmp / "upstream"
    shutil.copytree(module_source(tool), source)
    for path in [source, *source.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)  # the module cache is read-only
    for relative, content in tool.generated.items():
        target = source / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    wrapper = tmp / "wrapper"
    wrapper.mkdir()
    shutil.copy(tool.wrapper / "go.sum", wrapper / "go.sum")
    (wrapper / "go.mod").write_text(
        (tool.wrapper / "go.mod").read_text()
        + f"\nreplace {tool.module} {tool.upstream_version} => {source}\n"
    )
    return wrapper


def _build_into(tool: GoTool, tmp: Path) -> None:
    if not (tool.wrapper / "go.mod").is_file():
        raise ComponentError(f"wrapper module {tool.wrapper} is missing its go.mod")
    out = tmp / "bin"
    out.mkdir(parents=True)
    build_log = tmp / "build.log"
    cmd = build_command(tool, out)
    workdir = _module_with_generated_files(tool, tmp) if tool.generated else tool.wrapper
    log(
        f"building {tool.name} {tool.version} ({', '.join(tool.binaries)}) into the tool cache; "
        f"a cold build takes minutes, progress in {cache_dir(tool.name, tool.cache_version)}.build.log"
    )
    started = time.monotonic()
    side_log = cache_dir(tool.name, tool.cache_version).with_name(
        f"{tool.name}-{tool.cache_version}.build.log"
    )
    with open(side_log, "wb") as handle:
        proc = subprocess.run(
            cmd, cwd=workdir, env=go_env(), stdout=handle, stderr=subprocess.STDOUT, check=False
        )
    if workdir != tool.wrapper:
        shutil.rmtree(workdir.parent / "upstream")
        shutil.rmtree(workdir)
    shutil.copyfile(side_log, build_log)
    seconds = round(time.monotonic() - started, 1)
    if proc.returncode != 0:
        tail = "\n".join(side_log.read_text(errors="replace").splitlines()[-25:])
        raise ComponentError(
            f"go build of {tool.name} {tool.version} failed (exit {proc.returncode}); "
            f"full log: {side_log}\n{tail}"
        )
    for name in tool.binaries:
        if not (out / name).is_file():
            raise ComponentError(f"go build of {tool.name} did not produce {name}; see {side_log}")
    go_version = subprocess.run(
        [go_binary(), "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    (tmp / "build.json").write_text(
        json.dumps(
            {
                "tool": tool.name,
                "version": tool.version,
                "binaries": tool.binaries,
                "seconds": seconds,
                "go": go_version,
                "command": " ".join(cmd[1:]),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
        + "\n"
    )
    log(f"built {tool.name} {tool.version} in {seconds:.0f}s")


def ensure_built(tool: GoTool | str) -> Path:
    """Build ``tool`` into the cache unless it is already there; return its ``bin`` directory."""
    if isinstance(tool, str):
        tool = TOOLS[tool]
    root = ensure_cached(tool.name, tool.cache_version, lambda tmp: _build_into(tool, tmp))
    return root / "bin"


def build_info(tool: GoTool | str) -> dict:
    """The ``build.json`` record of a cached build ({} if it is not built)."""
    if isinstance(tool, str):
        tool = TOOLS[tool]
    try:
        return json.loads((cache_dir(tool.name, tool.cache_version) / "build.json").read_text())
    except (OSError, ValueError):
        return {}


# The test bed's own tools can be built ahead of time by `testbed tools` (CI's stages `tools` and
# `images`, at the head of its two lanes, so a cold build shows up as stages of its own).
for _name in ("kubernetes", "etcd", "kwok"):
    register_tool(_name, lambda _n=_name: ensure_built(_n))
# the host sidecar is the daprd of the Dapr build the images use (one build for both)
register_tool("daprd", lambda: ensure_built(DAPR_TOOL))
# what the kind node image (tests/testbed/kind_node.py, CI stage containers) is assembled from; the
# Kubernetes builds last, so that on a cold cache they reuse the packages the `tools` stage compiled
# for the kwok cluster meanwhile instead of compiling them a second time beside it
for _name in ("kind", "containerd", "coredns", "cri-tools", "etcd-kubeadm", "kubelet", "kubernetes-node"):
    register_tool(_name, lambda _n=_name: ensure_built(_n))


def _main(argv: list[str]) -> int:
    usage = "usage: python -m testbed.gobuild list | build TOOL... | path TOOL"
    if not argv:
        print(usage, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    unknown = [a for a in args if a not in TOOLS]
    if unknown:
        print(f"unknown tool(s): {', '.join(unknown)}; known: {', '.join(TOOLS)}", file=sys.stderr)
        return 2
    try:
        if cmd == "list":
            for tool in TOOLS.values():
                state = "built" if tool.is_built() else "not built"
                print(f"{tool.name:<11} {tool.version:<9} {state:<10} {tool.purpose}")
            return 0
        if cmd == "build" and args:
            for name in args:
                print(ensure_built(name))
            return 0
        if cmd == "path" and len(args) == 1:
            print(ensure_built(args[0]))
            return 0
    except (MissingTool, ComponentError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
