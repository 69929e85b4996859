"""The Dapr chart's container images, built here from github.com/dapr/dapr at the version they are named.

No registry is reachable on the machines this runs on, so the images the Dapr chart runs (operator,
sidecar injector, sentry, placement, scheduler) and the sidecar the injector adds (daprd) are made
locally and loaded under their upstream names, e.g. ``ghcr.io/dapr/operator:1.18.2``.  The chart
builds each reference as ``<global.registry>/<name>:<global.tag>`` (its subcharts' ``image.name`` and
the injector's ``injectorImage.name``); :func:`image_refs` gives the same list for a registry and tag.

What an image holds, and why:

* the binary at ``/<name>``, built by :mod:`testbed.gobuild` (tool ``dapr-control-plane``: the
  daprd wrapper module, ``CGO_ENABLED=0``, upstream's ``buildinfo.version`` and logger version
  stamps, so each reports the version its tag names; its daprd is the host sidecar's too).  daprd
  is built with ``-tags stablecomponents`` (upstream images use ``allcomponents``): the stable
  components, which include everything this project uses (Kafka pub/sub, the Kubernetes secret
  store);
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
import json
import time
from pathlib import Path

from testbed import gobuild, image_archive
from testbed.core import ensure_cached, register_tool

VERSION = gobuild.DAPR_VERSION
#: the chart's default ``global.registry``
UPSTREAM_REGISTRY = "ghcr.io/dapr"
#: the image names of the chart (each subchart's ``image.name``, the injector's ``injectorImage.name``),
#: which are also the names of the binaries in them
NAMES = ("daprd", "injector", "operator", "placement", "scheduler", "sentry")
#: the non-root user of upstream's base image (distroless ``nonroot``)
NONROOT = image_archive.NONROOT
#: bump when what goes into an image changes in a way the key does not see
RECIPE_VERSION = "1"
TOOL = gobuild.DAPR_TOOL


def image_refs(registry: str = UPSTREAM_REGISTRY, tag: str = VERSION) -> list[str]:
    """The references the chart renders for ``global.registry``/``global.tag``, in :data:`NAMES` order."""
    return [f"{registry}/{name}:{tag}" for name in NAMES]


# --------------------------------------------------------------------------------------------------
# The images in a rendered chart


def chart_image_refs(manifests: str) -> set[str]:
    """Every image a rendered Dapr chart references: the containers of its workloads and the sidecar
    image the injector is told to add (its ``SIDECAR_IMAGE`` environment variable)."""
    found: set[str] = set()
    for container in image_archive.rendered_containers(manifests):
        found.add(container["image"])
        for env in container.get("env") or []:
            if env.get("name") == "SIDECAR_IMAGE":
                found.add(env["value"])
    return found


# --------------------------------------------------------------------------------------------------
# Building the archive


def _image_config(name: str, diff_ids: list[str]) -> bytes:
    return image_archive.image_config(_config_section(name), diff_ids, _history(name))


def _config_section(name: str) -> dict:
    return {
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
    }


def _history(name: str) -> list[str]:
    return [image_archive.BASE_HISTORY, f"/{name} from github.com/dapr/dapr v{VERSION}"]


def archive_key() -> str:
    """Content key of the archive: the binaries, the base files and the recipe (builds the binaries
    when they are not in the cache)."""
    bin_dir = gobuild.ensure_built(TOOL)
    digest = hashlib.sha256(f"recipe={RECIPE_VERSION}\narch={image_archive.architecture()}\n".encode())
    for entry in image_archive.base_entries():
        digest.update(f"{entry.path}\0{entry.mode:o}\0{entry.uid}\0".encode())
        digest.update(hashlib.sha256(entry.data or b"").digest())
    for name in NAMES:
        digest.update(f"{name}\0{image_archive.sha256_file(bin_dir / name)}\n".encode())
    digest.update(_image_config("probe", []))
    return digest.hexdigest()[:16]


def _build_archive(out: Path, registry: str, tag: str) -> None:
    started = time.monotonic()
    bin_dir = gobuild.ensure_built(TOOL)
    images = [
        image_archive.Image(
            ref=ref,
            entries=[image_archive.Entry(name, 0o755, source=bin_dir / name)],
            config=_config_section(name),
            created_by=_history(name)[1],
        )
        for name, ref in zip(NAMES, image_refs(registry, tag), strict=True)
    ]
    config_ids = image_archive.write_archive(out / "images.tar", images)
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


archive_images = image_archive.archive_images


# --------------------------------------------------------------------------------------------------
# Loading


def load_into_docker(host: str, registry: str = UPSTREAM_REGISTRY, tag: str = VERSION) -> list[str]:
    """Load the images into the Docker engine at ``host`` unless each reference there already is our
    image (same id); return the references."""
    return image_archive.load_into_docker(host, ensure_archive(registry, tag), f"Dapr {VERSION}")


def load_into_kind(
    cluster: str, docker_host: str, registry: str = UPSTREAM_REGISTRY, tag: str = VERSION
) -> list[str]:
    """``kind load image-archive`` of the six images into every node of kind cluster ``cluster``,
    whose node containers run in the Docker engine at ``docker_host``; return the references."""
    return image_archive.load_into_kind(cluster, docker_host, ensure_archive(registry, tag))


register_tool("dapr-images", ensure_archive)
