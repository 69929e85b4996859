"""Container images written directly as a ``docker save`` archive, and loading it into Docker or kind.

No registry is reachable where the test bed runs, so the images a real cluster needs (the Dapr chart's,
kube-prometheus-stack's, ...) are assembled here from binaries built by :mod:`testbed.gobuild`: a
shared base layer with the files a distroless base provides and the programs use, one layer per image
with its files, and an image configuration.  Everything has fixed times and owners, so the same inputs
give the same bytes.  ``docker load``, ``kind load image-archive`` and ``ctr images import`` read the
archive.  Used by :mod:`testbed.dapr_images` and :mod:`testbed.monitoring_images`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from testbed import gobuild
from testbed.core import ComponentError, MissingTool, log
from testbed.images import CA_BUNDLE, docker_cli

#: the non-root user of distroless ``nonroot`` bases, and ``nobody`` of distroless and busybox
NONROOT = 65532
NOBODY = 65534
BASE_HISTORY = "base files (passwd, group, CA bundle, /tmp)"


def architecture() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _ca_bundle() -> bytes:
    if not CA_BUNDLE.is_file():
        raise MissingTool(str(CA_BUNDLE), "apt-get install -y ca-certificates")
    return CA_BUNDLE.read_bytes()


@dataclass(frozen=True)
class Entry:
    """One file or directory of a layer."""

    path: str
    mode: int
    data: bytes | None = None  # None (and no source): a directory
    uid: int = 0
    source: Path | None = None  # a file read from disk (the binaries)


def base_entries() -> list[Entry]:
    """What distroless ``static`` provides that these programs use: users root, nobody (65534) and
    nonroot (65532), ``nsswitch.conf``, a CA bundle (the host's), ``/tmp`` (1777), the home of
    nonroot."""
    passwd = (
        "root:x:0:0:root:/root:/sbin/nologin\n"
        f"nobody:x:{NOBODY}:{NOBODY}:nobody:/nonexistent:/sbin/nologin\n"
        f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
    )
    group = f"root:x:0:\nnobody:x:{NOBODY}:\nnonroot:x:{NONROOT}:\n"
    return [
        Entry("etc", 0o755),
        Entry("etc/group", 0o644, group.encode()),
        Entry("etc/nsswitch.conf", 0o644, b"hosts: files dns\n"),
        Entry("etc/passwd", 0o644, passwd.encode()),
        Entry("etc/ssl", 0o755),
        Entry("etc/ssl/certs", 0o755),
        Entry("etc/ssl/certs/ca-certificates.crt", 0o644, _ca_bundle()),
        Entry("home", 0o755),
        Entry("home/nonroot", 0o700, uid=NONROOT),
        Entry("root", 0o700),
        Entry("tmp", 0o1777),
    ]


def entries_digest(entries: list[Entry]) -> bytes:
    """A digest of what ``entries`` put into a layer (for content keys)."""
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(f"{entry.path}\0{entry.mode:o}\0{entry.uid}\0".encode())
        if entry.source is not None:
            digest.update(bytes.fromhex(sha256_file(entry.source)))
        else:
            digest.update(hashlib.sha256(entry.data or b"").digest())
    return digest.digest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_layer(entries: list[Entry], dest: Path) -> str:
    """Write a layer tar; return its sha256 hex digest (the image's ``diff_id``)."""
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
    return sha256_file(dest)


def image_config(config: dict, diff_ids: list[str], history: list[str]) -> bytes:
    """An image configuration (``config`` is its ``config`` section: User, Env, Entrypoint, ...),
    one history line per layer."""
    document = {
        "architecture": architecture(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": line} for line in history],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Image:
    """One image of an archive: the base layer plus a layer of ``entries``."""

    ref: str
    entries: list[Entry]
    #: the image configuration's ``config`` section
    config: dict
    #: the history line of its own layer
    created_by: str


def write_archive(dest: Path, images: list[Image]) -> dict[str, str]:
    """Write ``images`` (sharing :func:`base_entries` as their first layer) as a ``docker save``
    archive at ``dest``; return reference -> image id (``sha256:`` of its configuration)."""
    work = dest.parent / "layers"
    work.mkdir()
    base_id = write_layer(base_entries(), work / "base.tar")
    members: dict[str, Path] = {f"{base_id}/layer.tar": work / "base.tar"}
    manifest, config_ids = [], {}
    for number, image in enumerate(images):
        layer = work / f"{number}.tar"
        layer_id = write_layer(image.entries, layer)
        members[f"{layer_id}/layer.tar"] = layer
        config = image_config(image.config, [base_id, layer_id], [BASE_HISTORY, image.created_by])
        config_id = hashlib.sha256(config).hexdigest()
        (work / f"{config_id}.json").write_bytes(config)
        members[f"{config_id}.json"] = work / f"{config_id}.json"
        config_ids[image.ref] = f"sha256:{config_id}"
        manifest.append(
            {
                "Config": f"{config_id}.json",
                "RepoTags": [image.ref],
                "Layers": [f"{base_id}/layer.tar", f"{layer_id}/layer.tar"],
            }
        )
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1))
    members["manifest.json"] = work / "manifest.json"
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
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
    return config_ids


def archive_images(archive: Path) -> dict[str, str]:
    """Reference -> image id of the images in an archive (from the ``images.json`` beside it)."""
    return json.loads((archive.parent / "images.json").read_text())["images"]


# --------------------------------------------------------------------------------------------------
# The images of a rendered chart


def rendered_containers(manifests: str) -> Iterator[dict]:
    """Every container and init container of the workloads (and bare pods) in rendered manifests."""
    for obj in yaml.safe_load_all(manifests):
        if not isinstance(obj, dict):
            continue
        spec = obj.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or (spec if obj.get("kind") == "Pod" else {})
        if obj.get("kind") == "CronJob":
            pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        yield from (pod.get("initContainers") or []) + (pod.get("containers") or [])


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


def load_into_docker(host: str, archive: Path, what: str) -> list[str]:
    """Load ``archive`` into the Docker engine at ``host`` unless each reference there already is its
    image (same id); return the references.  ``what`` names the images in the log line."""
    wanted = archive_images(archive)
    present = _docker(host, "image", "inspect", "--format", "{{.Id}}", *wanted)
    if present.returncode != 0 or present.stdout.split() != list(wanted.values()):
        log(f"loading the {what} images from {archive}")
        done = _docker(host, "load", "-i", str(archive))
        if done.returncode != 0:
            raise ComponentError(f"docker load of {archive} failed: {done.stderr.strip()}")
    return list(wanted)


def load_into_kind(cluster: str, docker_host: str, archive: Path) -> list[str]:
    """``kind load image-archive`` of ``archive`` into every node of kind cluster ``cluster``, whose
    node containers run in the Docker engine at ``docker_host``; return the references."""
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
