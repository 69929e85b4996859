"""Base images made here: Debian root file systems (debootstrap) imported into the test bed's Docker.

No container registry is reachable on the machines this runs on, so nothing can be pulled.  A base
image is a Debian ``bookworm`` tree made with ``debootstrap --variant=minbase --include=<packages>``
from the Debian mirror the host's apt already uses, packed as a tarball into the tool cache
(``debian-<recipe>-<key>``, the key a hash of everything that goes into the tree) and loaded with
``docker import``.  A warm run only imports the saved tarball.

The registries are reached through a TLS-intercepting proxy on such machines: the host's CA bundle
(:data:`CA_BUNDLE`) replaces the tree's, and ``PIP_CERT``/``SSL_CERT_FILE`` point at it, so ``pip`` and
Python's ``ssl`` inside a container (or a ``docker build`` on the image) trust what the host trusts.
The bundle is part of the cache key.

The services image (``services/Dockerfile``, built with the legacy builder on the ``python3`` base
through its ``PYTHON_IMAGE`` build argument) is cached the same way: ``docker save`` into
``services-image-<key>``, the key a hash of the base image's tag and the files the build reads, so a
warm run loads it instead of building (the build installs the locked requirements from PyPI).

    from testbed.images import ensure_base_image, ensure_services_image
    tag = ensure_base_image(docker_engine.host, "python3")   # e.g. "testbed/debian-python3:bookworm-1a2b…"
    ref = ensure_services_image(docker_engine.host)          # "todo-services:testbed-<key>"
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from testbed.core import (
    ComponentError,
    MissingTool,
    apt_install,
    ensure_cached,
    file_lock,
    log,
    repo_root,
    require_tool,
    state_dir,
)

SUITE = "bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: bump when the way a tree is made changes (so cached tarballs of the old recipe are not reused)
RECIPE_VERSION = "1"
#: the host's apt sources: one-line ``sources.list`` and the ``sources.list.d`` directory
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


@dataclass(frozen=True)
class Recipe:
    """A base image: the Debian packages on top of ``minbase`` and the image's configuration."""

    packages: tuple[str, ...]
    changes: tuple[str, ...] = ()


RECIPES: dict[str, Recipe] = {
    # Python 3.11 with venv: the base of services/Dockerfile (its PYTHON_IMAGE build argument).
    # python-is-python3: the Dockerfile runs `python -m venv`.
    "python3": Recipe(("python3", "python3-venv", "python-is-python3", "ca-certificates")),
    # systemd as PID 1 with what a Kubernetes node runs beside kubelet and containerd (Debian's runc and
    # CNI plugins, iptables, conntrack, ...): a privileged container boots it like a kind node.
    "node": Recipe(
        (
            "systemd",
            "systemd-sysv",
            "dbus",
            "ca-certificates",
            "iproute2",
            "iptables",
            "conntrack",
            "ethtool",
            "socat",
            "kmod",
            "procps",
            "util-linux",
            "mount",
            "ebtables",
            "runc",
            "containernetworking-plugins",
            "libseccomp2",
            "pigz",
            "fuse-overlayfs",
            # kind's /kind/bin/mount-product-files.sh, the createContainer hook of every container
            "jq",
        ),  # fmt: skip
        ("ENV container=docker", 'ENTRYPOINT ["/sbin/init"]'),
    ),
    # kube-proxy's base in the kind node image (tests/testbed/kind_node.py): the programs it runs for its
    # iptables and nftables modes (upstream builds it on a distroless image with iptables and conntrack)
    "kube-proxy": Recipe(("iptables", "nftables", "conntrack", "ipset", "kmod")),
}


def docker_cli() -> str:
    return require_tool("docker", "install the Docker CLI: apt-get install -y docker.io")


def docker_run_cli(
    host: str, *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess:
    """The Docker CLI against the engine at ``host``; with ``check``, a failure names the command
    and Docker's error."""
    done = subprocess.run(
        [docker_cli(), *args],
        env=os.environ | {"DOCKER_HOST": host},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if check:
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done


def debootstrap() -> str:
    found = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").is_file() else None
    )
    if found:
        return found
    apt_install("debootstrap", "debootstrap", "apt-get install -y debootstrap")
    return require_tool("debootstrap", "apt-get install -y debootstrap", ["/usr/sbin/debootstrap"])


def debian_mirror() -> str:
    """The Debian mirror of the host's apt configuration (``$TESTBED_DEBIAN_MIRROR`` overrides it).

    It is the package registry this machine reaches; the first ``URIs:`` (deb822) or ``deb`` line
    whose suites include the plain suite wins.
    """
    override = os.environ.get("TESTBED_DEBIAN_MIRROR")
    if override:
        return override
    one_line, directory = APT_SOURCES
    files = [one_line, *sorted(directory.glob("*"))]
    for path in files:
        if path.suffix not in (".list", ".sources") and path != one_line:
            continue
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    key, _, value = line.partition(":")
                    if not line.startswith("#") and value:
                        fields[key.strip().lower()] = value.strip()
                if (
                    "deb" in fields.get("types", "").split()
                    and SUITE in fields.get("suites", "").split()
                    and fields.get("uris")
                ):
                    return fields["uris"].split()[0]
        else:
            for line in text.splitlines():
                parts = line.split("#", 1)[0].split()
                if (
                    len(parts) >= 3
                    and parts[0] == "deb"
                    and not parts[1].startswith("[")
                    and parts[2] == SUITE
                ):
                    return parts[1]
    raise MissingTool(
        f"a Debian {SUITE} mirror in the apt sources",
        "add one to /etc/apt/sources.list(.d) or set TESTBED_DEBIAN_MIRROR",
    )


def _ca_bundle() -> bytes:
    if not CA_BUNDLE.is_file():
        raise MissingTool(str(CA_BUNDLE), "apt-get install -y ca-certificates")
    return CA_BUNDLE.read_bytes()


def recipe_key(name: str) -> str:
    """Content key of a recipe's tarball: suite, packages, recipe version and the CA bundle."""
    recipe = RECIPES[name]
    facts = {
        "suite": SUITE,
        "variant": "minbase",
        "packages": sorted(recipe.packages),
        "changes": list(recipe.changes),
        "recipe": RECIPE_VERSION,
        "ca": hashlib.sha256(_ca_bundle()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def import_changes(name: str) -> list[str]:
    """The image configuration ``docker import --change`` gives a base image."""
    return [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"ENV SSL_CERT_FILE={CA_BUNDLE}",
        f"ENV PIP_CERT={CA_BUNDLE}",
        *RECIPES[name].changes,
    ]


def image_tag(name: str) -> str:
    """``testbed/debian-<name>:<suite>-<key>``, the key covering the tarball and the import changes."""
    changes = hashlib.sha256("\n".join(import_changes(name)).encode()).hexdigest()[:8]
    return f"testbed/debian-{name}:{SUITE}-{recipe_key(name)}-{changes}"


def _build_tarball(name: str, out: Path) -> None:
    if os.geteuid() != 0:
        raise MissingTool(
            "debootstrap (needs root)", "build the base images as root (the test bed's Docker needs root too)"
        )
    recipe = RECIPES[name]
    rootfs = out / "rootfs"
    mirror = debian_mirror()
    argv = [
        debootstrap(),
        "--variant=minbase",
        f"--include={','.join(recipe.packages)}",
        SUITE,
        str(rootfs),
        mirror,
    ]
    log_file = out / "debootstrap.log"
    started = time.monotonic()
    with open(log_file, "wb") as handle:
        done = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
        raise ComponentError(
            f"debootstrap of {name!r} from {mirror} failed (code {done.returncode}):\n{tail}"
        )
    # the host's trust (a TLS-intercepting proxy's CA among it) for pip and ssl in containers
    (rootfs / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/ssl/certs/ca-certificates.crt").write_bytes(_ca_bundle())
    # downloaded packages and indexes are not part of an image
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / junk).glob("*"):
            if entry.is_file() and entry.name != "lock":
                entry.unlink()
    tar = require_tool("tar", "apt-get install -y tar")
    subprocess.run(
        [tar, "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(out / "rootfs.tar"), "."],
        check=True,
    )
    shutil.rmtree(rootfs)
    (out / "recipe.json").write_text(
        json.dumps(
            {
                "name": name,
                "packages": list(recipe.packages),
                "mirror": mirror,
                "seconds": round(time.monotonic() - started),
            },
            indent=1,
        )
    )


def ensure_tarball(name: str) -> Path:
    """The cached root file system tarball of a recipe, made by debootstrap when absent."""
    if name not in RECIPES:
        raise ValueError(f"unknown base image recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    path = ensure_cached(
        f"debian-{name}", f"{SUITE}-{recipe_key(name)}", lambda out: _build_tarball(name, out)
    )
    return path / "rootfs.tar"


def image_exists(host: str, tag: str) -> bool:
    done = subprocess.run(
        [docker_cli(), "image", "inspect", "--format", "{{.Id}}", tag],
        env=os.environ | {"DOCKER_HOST": host},
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def ensure_base_image(host: str, name: str) -> str:
    """Import the base image ``name`` into the Docker engine at ``host`` (once); return its tag."""
    tag = image_tag(name)
    if image_exists(host, tag):
        return tag
    tarball = ensure_tarball(name)
    argv = [docker_cli(), "import"]
    for change in import_changes(name):
        argv += ["--change", change]
    with file_lock(state_dir() / f".import-{name}.lock"):
        if image_exists(host, tag):
            return tag
        log(f"importing {tarball.name} of {name} as {tag}")
        done = subprocess.run(
            [*argv, str(tarball), tag],
            env=os.environ | {"DOCKER_HOST": host},
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise ComponentError(f"docker import of {tarball} as {tag} failed: {done.stderr.strip()}")
    return tag


# --------------------------------------------------------------------------------------------------
# The services image

SERVICES_REPOSITORY = "todo-services"


def services_context() -> Path:
    return repo_root() / "services"


def _context_files(context: Path) -> list[Path]:
    """The files ``services/Dockerfile`` reads (its COPY lines), without what .dockerignore drops."""
    names = ("Dockerfile", ".dockerignore", "requirements-build.lock", "requirements.lock", "pyproject.toml")
    files = [context / name for name in names]
    for path in sorted((context / "src").rglob("*")):
        parts = path.relative_to(context).parts
        if not path.is_file() or "__pycache__" in parts or path.suffix in (".pyc", ".pyo", ".pyd"):
            continue
        if any(part.endswith(".egg-info") for part in parts):
            continue
        files.append(path)
    return [f for f in files if f.is_file()]


def services_key(base: str) -> str:
    context = services_context()
    digest = hashlib.sha256(f"base={base}\nrecipe={RECIPE_VERSION}\n".encode())
    for path in _context_files(context):
        digest.update(f"{path.relative_to(context)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _docker(host: str, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(
        [docker_cli(), *args],
        env=os.environ | {"DOCKER_HOST": host, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def ensure_services_image(host: str) -> str:
    """The services image in the engine at ``host``: loaded from the cache, or built and saved there."""
    base = ensure_base_image(host, "python3")
    key = services_key(base)
    ref = f"{SERVICES_REPOSITORY}:testbed-{key}"
    if image_exists(host, ref):
        return ref

    def build(out: Path) -> None:
        started = time.monotonic()
        # the legacy builder: BuildKit would try to pull the Dockerfile's `# syntax=` frontend
        done = _docker(
            host, "build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}",
            # the base is made here from Debian packages and tagged by its content, not a digest
            "--build-arg", "ALLOW_UNPINNED_BASE=true",
            "-t", ref, "-f", str(services_context() / "Dockerfile"), str(services_context()),
        )  # fmt: skip
        (out / "build.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise ComponentError(f"docker build of services/Dockerfile on {base} failed:\n{tail}")
        saved = _docker(host, "save", "-o", str(out / "image.tar"), ref)
        if saved.returncode != 0:
            raise ComponentError(f"docker save {ref} failed: {saved.stderr.strip()}")
        (out / "image.json").write_text(
            json.dumps(
                {"ref": ref, "base": base, "build_seconds": round(time.monotonic() - started)}, indent=1
            )
        )

    cached = ensure_cached("services-image", key, build)
    if not image_exists(host, ref):
        log(f"loading {ref} from the tool cache")
        done = _docker(host, "load", "-i", str(cached / "image.tar"))
        if done.returncode != 0:
            raise ComponentError(f"docker load of {cached / 'image.tar'} failed: {done.stderr.strip()}")
    return ref
