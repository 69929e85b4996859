"""The Dapr chart's container images, built here from github.com/dapr/dapr at the version they are named.

No registry is reachable on the machines this runs on, so the images the Dapr chart runs (operator,
sidecar injector, sentry, placement, scheduler) and the sidecar the injector adds (daprd) are made
locally and loaded under their upstream names, e.g. ``ghcr.io/dapr/operator:1.18.2``.  The chart
builds each reference as ``<global.registry>/<name>:<global.tag>`` (its subcharts' ``image.name`` and
the injector's ``injectorImage.name``); :func:`image_refs` gives the same list for a registry and tag.

What an image holds, and why:

* the binary at ``/<name>``, built by :mod:`testbed.gobuild` (tool ``dapr-control-plane``: the
  daprd wrapper module, ``CGO_ENABLED=0``, upstream's ``buildinfo.version`` and logger version
  stamps, so each reports the version its tag names).  daprd is built with ``-tags
  stablecomponents`` (upstream images use ``allcomponents``): the stable components, which include
  everything this project uses (Kafka pub/sub, the Kubernetes secret store);
* the files upstream's base (distroless ``static:nonroot``) provides that these programs use:
  ``/etc/passwd`` and ``/etc/group`` with ``nonroot`` (65532), ``/etc/nsswitch.conf``, a CA bundle
  (the host's, as the Debian bases of :mod:`testbed.images` carry it), ``/tmp`` (1777) and
  ``/home/nonroot``;
* upstream's image configuration: ``USER 65532:65532`` (numeric, so the kubelet can check the
  chart's ``runAsNonRoot: true`` without a ``runAsUser``), working directory ``/``, no entrypoint
  (the chart and the injector name the command, e.g. ``/operator``).

The six images share the base layer and go into one archive in ``docker save`` format (written
directly, byte-reproducible) in the tool cache, ``dapr-images-<version>-<key>/images.tar``, the key a
hash of the binaries, the base files and the image configuration.  ``docker load``, ``kind load
image-archive`` and ``ctr images import`` all read it.

    from testbed import dapr_images
    archive = dapr_images.ensure_archive()                        # builds when absent
    dapr_images.load_into_docker(docker_engine.host)              # -> the six references
    dapr_images.load_into_kind("todo", docker_engine.host)        # kind load image-archive

Command line: ``scripts/testbed tools dapr-images`` builds the archive ahead of time.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from testbed import gobuild
from testbed.core import ComponentError, MissingTool, ensure_cached, log, register_tool
from testbed.images import CA_BUNDLE, docker_cli

VERSION = gobuild.DAPR_VERSION
#: the chart's default ``global.registry``
UPSTREAM_REGISTRY = "ghcr.io/dapr"
#: the image names of the chart (each subchart's ``image.name``, the injector's ``injectorImage.name``),
#: which are also the names of the binaries in them
NAMES = ("daprd", "injector", "operator", "placement", "scheduler", "sentry")
#: the non-root user of upstream's base image (distroless ``nonroot``)
NONROOT = 65532
#: bump when what goes into an image changes in a way the key does not see
RECIPE_VERSION = "1"
TOOL = "dapr-control-plane"


def image_refs(registry: str = UPSTREAM_REGISTRY, tag: str = VERSION) -> list[str]:
    """The references the chart renders for ``global.registry``/``global.tag``, in :data:`NAMES` order."""
    return [f"{registry}/{name}:{tag}" for name in NAMES]


# --------------------------------------------------------------------------------------------------
# The images in a rendered chart


def chart_image_refs(manifests: str) -> set[str]:
    """Every image a rendered Dapr chart references: the containers of its workloads and the sidecar
    image the injector is told to add (its ``SIDECAR_IMAGE`` environment variable)."""
    found: set[str] = set()
    for obj in yaml.safe_load_all(manifests):
        if not isinstance(obj, dict):
            continue
        spec = obj.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or (spec if obj.get("kind") == "Pod" else {})
        if obj.get("kind") == "CronJob":
            pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            found.add(container["image"])
            for env in container.get("env") or []:
                if env.get("name") == "SIDECAR_IMAGE":
                    found.add(env["value"])
    return found


# --------------------------------------------------------------------------------------------------
# Building the archive


def _architecture() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _ca_bundle() -> bytes:
    if not CA_BUNDLE.is_file():
        raise MissingTool(str(CA_BUNDLE), "apt-get install -y ca-certificates")
    return CA_BUNDLE.read_bytes()


@dataclass(frozen=True)
class _Entry:
    path: str
    mode: int
    data: bytes | None = None  # None: a directory
    uid: int = 0
    source: Path | None = None  # a file read from disk (the binaries)


def _base_entries() -> list[_Entry]:
    passwd = (
        "root:x:0:0:root:/root:/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
        f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
    )
    group = f"root:x:0:\nnobody:x:65534:\nnonroot:x:{NONROOT}:\n"
    return [
        _Entry("etc", 0o755),
        _Entry("etc/group", 0o644, group.encode()),
        _Entry("etc/nsswitch.conf", 0o644, b"hosts: files dns\n"),
        _Entry("etc/passwd", 0o644, passwd.encode()),
        _Entry("etc/ssl", 0o755),
        _Entry("etc/ssl/certs", 0o755),
        _Entry("etc/ssl/certs/ca-certificates.crt", 0o644, _ca_bundle()),
        _Entry("home", 0o755),
        _Entry("home/nonroot", 0o700, uid=NONROOT),
        _Entry("root", 0o700),
        _Entry("tmp", 0o1777),
    ]


def _write_layer(entries: list[_Entry], dest: Path) -> str:
    """Write a layer tar (fixed times and owners, so the same files give the same bytes); return
    its sha256 hex digest (the image's ``diff_id``)."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.path)
            info.mode, info.uid, info.gid, info.mtime = entry.mode, entry.uid, entry.uid, 0
            if entry.data is None and entry.source is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.source is not None:
                info.size = entry.source.stat().st_size
                with open(entry.source, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    return _sha256_file(dest)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _image_config(name: str, diff_ids: list[str]) -> bytes:
    config = {
        "architecture": _architecture(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "User": f"{NONROOT}:{NONROOT}",
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
            ],
            "WorkingDir": "/",
            "Labels": {
                "org.opencontainers.image.title": name,
                "org.opencontainers.image.version": VERSION,
                "org.opencontainers.image.source": "https://github.com/dapr/dapr",
                "org.opencontainers.image.description": (
                    f"{name} built by the todo-platform test bed from the Go module "
                    f"github.com/dapr/dapr v{VERSION}"
                ),
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
        "history": [
            {"created": "1970-01-01T00:00:00Z", "created_by": "base files (passwd, group, CA bundle, /tmp)"},
            {
                "created": "1970-01-01T00:00:00Z",
                "created_by": f"/{name} from github.com/dapr/dapr v{VERSION}",
            },
        ],
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def archive_key() -> str:
    """Content key of the archive: the binaries, the base files and the recipe (builds the binaries
    when they are not in the cache)."""
    bin_dir = gobuild.ensure_built(TOOL)
    digest = hashlib.sha256(f"recipe={RECIPE_VERSION}\narch={_architecture()}\n".encode())
    for entry in _base_entries():
        digest.update(f"{entry.path}\0{entry.mode:o}\0{entry.uid}\0".encode())
        digest.update(hashlib.sha256(entry.data or b"").digest())
    for name in NAMES:
        digest.update(f"{name}\0{_sha256_file(bin_dir / name)}\n".encode())
    digest.update(_image_config("probe", []))
    return digest.hexdigest()[:16]


def _build_archive(out: Path, registry: str, tag: str) -> None:
    started = time.monotonic()
    bin_dir = gobuild.ensure_built(TOOL)
    work = out / "layers"
    work.mkdir()
    base_id = _write_layer(_base_entries(), work / "base.tar")
    members: dict[str, Path] = {f"{base_id}/layer.tar": work / "base.tar"}
    manifest, config_ids = [], {}
    for name, ref in zip(NAMES, image_refs(registry, tag), strict=True):
        layer = work / f"{name}.tar"
        layer_id = _write_layer([_Entry(name, 0o755, source=bin_dir / name)], layer)
        members[f"{layer_id}/layer.tar"] = layer
        config = _image_config(name, [base_id, layer_id])
        config_id = hashlib.sha256(config).hexdigest()
        (work / f"{config_id}.json").write_bytes(config)
        members[f"{config_id}.json"] = work / f"{config_id}.json"
        config_ids[ref] = f"sha256:{config_id}"
        manifest.append(
            {
                "Config": f"{config_id}.json",
                "RepoTags": [ref],
                "Layers": [f"{base_id}/layer.tar", f"{layer_id}/layer.tar"],
            }
        )
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1))
    members["manifest.json"] = work / "manifest.json"
    with tarfile.open(out / "images.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        for directory in sorted({m.split("/")[0] for m in members if "/" in m}):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for member, path in members.items():
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = path.stat().st_size, 0o644, 0
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    for path in work.iterdir():
        path.unlink()
    work.rmdir()
    (out / "images.json").write_text(
        json.dumps(
            {
                "version": VERSION,
                "images": config_ids,
                "binaries": gobuild.build_info(TOOL),
                "seconds": round(time.monotonic() - started, 1),
            },
            indent=1,
        )
        + "\n"
    )


def ensure_archive(registry: str = UPSTREAM_REGISTRY, tag: str = VERSION) -> Path:
    """The ``docker save``-format archive of the six images named for ``registry``/``tag`` (upstream's
    by default), built into the tool cache when absent (with the Go build first when needed)."""
    key = hashlib.sha256(f"{archive_key()}\n{registry}\n{tag}".encode()).hexdigest()[:16]
    root = ensure_cached("dapr-images", f"{VERSION}-{key}", lambda out: _build_archive(out, registry, tag))
    return root / "images.tar"


def archive_images(archive: Path) -> dict[str, str]:
    """Reference -> image id (``sha256:…`` of its configuration) of the images in an archive."""
    return json.loads((archive.parent / "images.json").read_text())["images"]


# --------------------------------------------------------------------------------------------------
# Loading


def _docker(host: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [docker_cli(), *args],
        env=os.environ | {"DOCKER_HOST": host},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def load_into_docker(host: str, registry: str = UPSTREAM_REGISTRY, tag: str = VERSION) -> list[str]:
    """Load the images into the Docker engine at ``host`` unless each reference there already is our
    image (same id); return the references."""
    archive = ensure_archive(registry, tag)
    wanted = archive_images(archive)
    present = _docker(host, "image", "inspect", "--format", "{{.Id}}", *wanted)
    if present.returncode != 0 or present.stdout.split() != list(wanted.values()):
        log(f"loading the Dapr {VERSION} images from {archive}")
        done = _docker(host, "load", "-i", str(archive))
        if done.returncode != 0:
            raise ComponentError(f"docker load of {archive} failed: {done.stderr.strip()}")
    return list(wanted)


def load_into_kind(
    cluster: str, docker_host: str, registry: str = UPSTREAM_REGISTRY, tag: str = VERSION
) -> list[str]:
    """``kind load image-archive`` of the six images into every node of kind cluster ``cluster``,
    whose node containers run in the Docker engine at ``docker_host``; return the references."""
    archive = ensure_archive(registry, tag)
    kind = gobuild.TOOLS["kind"].binary()
    done = subprocess.run(
        [str(kind), "load", "image-archive", str(archive), "--name", cluster],
        env=os.environ | {"DOCKER_HOST": docker_host},
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-2000:]
        raise ComponentError(f"kind load image-archive {archive} --name {cluster} failed: {output}")
    return list(archive_images(archive))


register_tool("dapr-images", ensure_archive)
