"""The monitoring images of a real cluster, built here from pinned Go modules under their upstream names.

What kube-prometheus-stack 88.5.3 runs with the monitoring role's kind values and Grafana off
(prometheus-operator and its config reloader, Prometheus, Alertmanager, kube-state-metrics,
node-exporter), the metrics-server of the role's own template, and kube-network-policies (NetworkPolicy
enforcement on kind).  Each image holds the one program its name says, built by :mod:`testbed.gobuild`
at the version its tag names, with upstream's version stamps (``--version`` prints the release), on the
shared distroless-like base of :mod:`testbed.image_archive`, with upstream's user, entrypoint and
working directory:

=================================================================  =====================  ========
image                                                              program                user
=================================================================  =====================  ========
quay.io/prometheus-operator/prometheus-operator:v0.93.1            /bin/operator          65534
quay.io/prometheus-operator/prometheus-config-reloader:v0.93.1     /bin/prometheus-...    65534
quay.io/prometheus/prometheus:v3.14.0-distroless                   /bin/prometheus        65532
quay.io/prometheus/alertmanager:v0.34.0                            /bin/alertmanager      65534
registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.20.0      /kube-state-metrics    65534
quay.io/prometheus/node-exporter:v1.12.1-distroless                /bin/node_exporter     65532
registry.k8s.io/metrics-server/metrics-server:v0.8.0               /metrics-server        65534
registry.k8s.io/networking/kube-network-policies:v0.8.0            /bin/netpol            root
=================================================================  =====================  ========

Differences from upstream's images, on purpose: Prometheus has no web UI (upstream embeds it with the
``builtinassets`` tag from files npm builds, which the module zip lacks: the API, scraping, rules and
remote write work, the UI pages do not) and no promtool; Alertmanager's UI page is a stub (see
:mod:`testbed.gobuild`) and there is no amtool and no busybox shell (upstream's base).  Users are
numeric (upstream's ``nobody`` is 65534) so a kubelet can check ``runAsNonRoot``; the chart sets its
own ``runAsUser`` anyway.  The admission webhook's certificate job image (kube-webhook-certgen) is not
here: the Go module proxy does not serve github.com/jkroepke/kube-webhook-certgen.

The images share the base layer and go into one ``docker save`` archive in the tool cache,
``monitoring-images-<key>/images.tar``, the key a hash of the binaries, the files and the
configurations.

    from testbed import monitoring_images
    archive = monitoring_images.ensure_archive()                     # builds when absent
    monitoring_images.load_into_docker(docker_engine.host)           # -> the references
    monitoring_images.load_into_kind("todo", docker_engine.host)     # kind load image-archive

Command line: ``scripts/testbed tools monitoring-images`` builds the archive ahead of time.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from testbed import gobuild, image_archive
from testbed.core import ensure_cached, register_tool
from testbed.image_archive import NOBODY, NONROOT

#: bump when what goes into an image changes in a way the key does not see
RECIPE_VERSION = "1"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Spec:
    """One image: upstream's reference and what upstream's Dockerfile puts in it."""

    ref: str
    #: the gobuild tool and the binary of it the image holds, and where
    tool: str
    binary: str
    path: str
    #: numeric user of the image (None: root, as upstream's)
    user: int | None
    entrypoint: tuple[str, ...] | None
    cmd: tuple[str, ...] | None = None
    workdir: str = "/"
    #: files copied from the upstream module (path in the image: path in the module)
    module_files: dict[str, str] = field(default_factory=dict)
    #: empty directories (path: owner uid), e.g. the working directory a volume is mounted on
    directories: dict[str, int] = field(default_factory=dict)
    #: the upstream repository (image label)
    source: str = ""

    @property
    def version(self) -> str:
        return gobuild.TOOLS[self.tool].version

    @property
    def name(self) -> str:
        """The short name (the last element of the repository)."""
        return self.ref.rsplit(":", 1)[0].rsplit("/", 1)[-1]


def _operator_ref(name: str) -> str:
    return f"quay.io/prometheus-operator/{name}:{gobuild.PROMETHEUS_OPERATOR_VERSION}"


SPECS: tuple[Spec, ...] = (
    Spec(
        ref=_operator_ref("prometheus-operator"),
        tool="prometheus-operator",
        binary="operator",
        path="bin/operator",
        user=NOBODY,
        entrypoint=("/bin/operator",),
        source="https://github.com/prometheus-operator/prometheus-operator",
    ),
    Spec(
        ref=_operator_ref("prometheus-config-reloader"),
        tool="prometheus-operator",
        binary="prometheus-config-reloader",
        path="bin/prometheus-config-reloader",
        user=NOBODY,
        entrypoint=("/bin/prometheus-config-reloader",),
        source="https://github.com/prometheus-operator/prometheus-operator",
    ),
    Spec(
        ref=f"quay.io/prometheus/prometheus:{gobuild.PROMETHEUS_VERSION}-distroless",
        tool="prometheus",
        binary="prometheus",
        path="bin/prometheus",
        user=NONROOT,
        entrypoint=("/bin/prometheus",),
        cmd=("--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"),
        workdir="/prometheus",
        module_files={"etc/prometheus/prometheus.yml": "documentation/examples/prometheus.yml"},
        directories={"prometheus": 0},
        source="https://github.com/prometheus/prometheus",
    ),
    Spec(
        ref=f"quay.io/prometheus/alertmanager:{gobuild.ALERTMANAGER_VERSION}",
        tool="alertmanager",
        binary="alertmanager",
        path="bin/alertmanager",
        user=NOBODY,
        entrypoint=("/bin/alertmanager",),
        cmd=("--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"),
        workdir="/alertmanager",
        module_files={"etc/alertmanager/alertmanager.yml": "examples/ha/alertmanager.yml"},
        directories={"alertmanager": NOBODY},
        source="https://github.com/prometheus/alertmanager",
    ),
    Spec(
        ref=f"registry.k8s.io/kube-state-metrics/kube-state-metrics:{gobuild.KUBE_STATE_METRICS_VERSION}",
        tool="kube-state-metrics",
        binary="kube-state-metrics",
        path="kube-state-metrics",
        user=NOBODY,
        entrypoint=("/kube-state-metrics", "--port=8080", "--telemetry-port=8081"),
        source="https://github.com/kubernetes/kube-state-metrics",
    ),
    Spec(
        ref=f"quay.io/prometheus/node-exporter:{gobuild.NODE_EXPORTER_VERSION}-distroless",
        tool="node-exporter",
        binary="node_exporter",
        path="bin/node_exporter",
        user=NONROOT,
        entrypoint=("/bin/node_exporter",),
        source="https://github.com/prometheus/node_exporter",
    ),
    Spec(
        ref=f"registry.k8s.io/metrics-server/metrics-server:{gobuild.METRICS_SERVER_VERSION}",
        tool="metrics-server",
        binary="metrics-server",
        path="metrics-server",
        user=NOBODY,
        entrypoint=("/metrics-server",),
        source="https://github.com/kubernetes-sigs/metrics-server",
    ),
    Spec(
        ref=f"registry.k8s.io/networking/kube-network-policies:{gobuild.KUBE_NETWORK_POLICIES_VERSION}",
        tool="kube-network-policies",
        binary="netpol",
        path="bin/netpol",
        user=None,  # distroless static's root: it programs nftables (the DaemonSet adds NET_ADMIN)
        entrypoint=None,
        cmd=("/bin/netpol",),
        source="https://github.com/kubernetes-sigs/kube-network-policies",
    ),
)

TOOLS = tuple(dict.fromkeys(spec.tool for spec in SPECS))


def spec(name: str) -> Spec:
    """The image whose short name is ``name`` (e.g. ``prometheus``)."""
    for candidate in SPECS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no monitoring image {name}; known: {[s.name for s in SPECS]}")


def image_refs() -> list[str]:
    return [s.ref for s in SPECS]


# --------------------------------------------------------------------------------------------------
# The images in a rendered chart

#: the operator's custom resources that name the image of the pods it makes
OPERATED_KINDS = ("Prometheus", "Alertmanager", "ThanosRuler")
RELOADER_FLAG = "--prometheus-config-reloader="


def chart_image_refs(manifests: str) -> set[str]:
    """Every image a rendered kube-prometheus-stack runs: its workloads' containers, the images its
    Prometheus and Alertmanager resources name, and the config reloader the operator adds to them."""
    found: set[str] = set()
    for container in image_archive.rendered_containers(manifests):
        found.add(container["image"])
        found.update(
            a.removeprefix(RELOADER_FLAG) for a in container.get("args") or [] if a.startswith(RELOADER_FLAG)
        )
    for obj in yaml.safe_load_all(manifests):
        if isinstance(obj, dict) and obj.get("kind") in OPERATED_KINDS:
            found.add(obj["spec"]["image"])
    return found


# --------------------------------------------------------------------------------------------------
# Building the archive


def _entries(image: Spec) -> list[image_archive.Entry]:
    tool = gobuild.TOOLS[image.tool]
    entries: list[image_archive.Entry] = []
    parents = {str(Path(p).parent) for p in [image.path, *image.module_files]} - {"."}
    for directory in sorted(parents | {str(p) for q in parents for p in Path(q).parents} - {"."}):
        entries.append(image_archive.Entry(directory, 0o755))
    for directory, uid in image.directories.items():
        entries.append(image_archive.Entry(directory, 0o755, uid=uid))
    if image.module_files:
        module = gobuild.module_source(tool)
        for inside, upstream in image.module_files.items():
            entries.append(image_archive.Entry(inside, 0o644, data=(module / upstream).read_bytes()))
    entries.append(image_archive.Entry(image.path, 0o755, source=gobuild.ensure_built(tool) / image.binary))
    return entries


def _config(image: Spec) -> dict:
    config: dict = {
        "Env": [PATH_ENV, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
        "WorkingDir": image.workdir,
        "Labels": {
            "org.opencontainers.image.title": image.name,
            "org.opencontainers.image.version": image.version,
            "org.opencontainers.image.source": image.source,
            "org.opencontainers.image.description": (
                f"{image.binary} built by the todo-platform test bed from the Go module "
                f"{gobuild.TOOLS[image.tool].module} {gobuild.TOOLS[image.tool].version}"
            ),
        },
    }
    if image.user is not None:
        config["User"] = f"{image.user}:{image.user}"
    if image.entrypoint:
        config["Entrypoint"] = list(image.entrypoint)
    if image.cmd:
        config["Cmd"] = list(image.cmd)
    return config


def archive_image(image: Spec) -> image_archive.Image:
    """One image as the archive holds it (the kind node image preloads kube-network-policies' alone)."""
    return image_archive.Image(
        ref=image.ref,
        entries=_entries(image),
        config=_config(image),
        created_by=f"/{image.path} from {gobuild.TOOLS[image.tool].module} {image.version}",
    )


def _images() -> list[image_archive.Image]:
    return [archive_image(s) for s in SPECS]


def archive_key() -> str:
    """Content key of the archive: binaries, files, configurations, base (builds missing binaries)."""
    digest = hashlib.sha256(f"recipe={RECIPE_VERSION}\narch={image_archive.architecture()}\n".encode())
    digest.update(image_archive.entries_digest(image_archive.base_entries()))
    for image in _images():
        digest.update(image.ref.encode() + b"\0")
        digest.update(image_archive.entries_digest(image.entries))
        digest.update(json.dumps(image.config, sort_keys=True).encode())
        digest.update(image.created_by.encode() + b"\n")
    return digest.hexdigest()[:16]


def _build_archive(out: Path) -> None:
    started = time.monotonic()
    config_ids = image_archive.write_archive(out / "images.tar", _images())
    (out / "images.json").write_text(
        json.dumps(
            {
                "images": config_ids,
                "binaries": {tool: gobuild.build_info(tool) for tool in TOOLS},
                "seconds": round(time.monotonic() - started, 1),
            },
            indent=1,
        )
        + "\n"
    )


def ensure_archive() -> Path:
    """The ``docker save``-format archive of the images, built into the tool cache when absent (the
    Go builds first when needed)."""
    for tool in TOOLS:
        gobuild.ensure_built(tool)
    root = ensure_cached("monitoring-images", archive_key(), _build_archive)
    return root / "images.tar"


def load_into_docker(host: str) -> list[str]:
    """Load the images into the Docker engine at ``host`` unless each reference there already is ours;
    return the references."""
    return image_archive.load_into_docker(host, ensure_archive(), "monitoring")


def load_into_kind(cluster: str, docker_host: str) -> list[str]:
    """``kind load image-archive`` of the images into every node of kind cluster ``cluster``."""
    return image_archive.load_into_kind(cluster, docker_host, ensure_archive())


register_tool("monitoring-images", ensure_archive)
