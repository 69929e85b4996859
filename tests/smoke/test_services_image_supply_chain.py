"""Supply chain of the services image (issue 17, item 14): a pinned base, hash-locked dependencies, no
pip at run time.

The image is the one the test bed builds (``ensure_services_image``). The refusals are shown by
building only the Dockerfile's ``build`` stage from a copy of the context whose lock was altered: the
install step is the first to read the lock, so each build stops there after one small download.
"""

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from testbed.images import (
    docker_cli,
    docker_run_cli,
    ensure_base_image,
    ensure_services_image,
    services_context,
)

pytestmark = pytest.mark.testbed

LOCKED_DOWN = ["--read-only", "--cap-drop", "ALL", "--user", "10001:10001", "--network", "none"]
#: a small pure-Python wheel of the lock, so the refused builds download little
PROBE_PACKAGE = "annotated-doc"


@pytest.fixture(scope="module")
def services_image(docker_engine) -> str:
    return ensure_services_image(docker_engine.host)


def _locked_entry(name: str) -> str:
    """The lock's entry for ``name``: its ``name==version`` line and its ``--hash`` lines."""
    text = (services_context() / "requirements.lock").read_text()
    found = re.search(
        rf"^{re.escape(name)}==\S+ \\\n(?:    --hash=sha256:[0-9a-f]{{64}}(?: \\)?\n)+", text, re.M
    )
    assert found, f"{name} is not hash-locked in services/requirements.lock"
    return found.group(0)


def _build_stage(host: str, tmp_path: Path, lock: str, *build_args: str) -> subprocess.CompletedProcess:
    """Build the ``build`` stage of services/Dockerfile with ``lock`` as its requirements.lock."""
    context = tmp_path / "context"
    context.mkdir()
    for name in ("Dockerfile", "requirements-build.lock"):
        shutil.copy(services_context() / name, context / name)
    (context / "requirements.lock").write_text(lock)
    return subprocess.run(
        [
            docker_cli(),
            "build",
            "--network",
            "host",
            "--target",
            "build",
            "--rm",
            "--force-rm",
            "-t",
            f"supply-chain-probe:{uuid.uuid4().hex[:8]}",
            *build_args,
            str(context),
        ],  # fmt: skip
        env=os.environ | {"DOCKER_HOST": host, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_runtime_image_has_no_pip_and_runs_locked_down(docker_engine, services_image):
    host = docker_engine.host
    for argv in (
        ["python", "-m", "pip", "--version"],
        ["python3", "-m", "pip", "--version"],
        ["/usr/bin/python3", "-m", "pip", "--version"],
        ["python", "-c", "import setuptools"],
        ["python", "-m", "ensurepip", "--version"],
    ):
        done = docker_run_cli(
            host, "run", "--rm", *LOCKED_DOWN, "--entrypoint", argv[0], services_image, *argv[1:], check=False
        )
        assert done.returncode != 0, f"{' '.join(argv)} works in the runtime image: {done.stdout}"
        assert "No module named" in done.stderr, done.stderr
    # the services still run as before: locked down, the application importable
    done = docker_run_cli(
        host, "run", "--rm", *LOCKED_DOWN, "--entrypoint", "python", services_image,
        "-c", "import todo.cli, todo.common.app; print('ok')",
    )  # fmt: skip
    assert done.stdout.strip() == "ok", done.stderr


def test_the_default_base_is_pinned_by_digest():
    dockerfile = (services_context() / "Dockerfile").read_text().replace("\\\n", "")
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert default, "services/Dockerfile has no PYTHON_IMAGE default"
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", default.group(1)), default.group(1)


def test_a_tampered_hash_fails_the_build(docker_engine, tmp_path):
    base = ensure_base_image(docker_engine.host, "python3")
    entry = _locked_entry(PROBE_PACKAGE)
    # one hex digit changed in every hash of the entry: the downloaded file no longer matches
    tampered = re.sub(r"sha256:([0-9a-f])", lambda m: "sha256:" + ("1" if m.group(1) == "0" else "0"), entry)
    done = _build_stage(
        docker_engine.host, tmp_path, tampered,
        "--build-arg", f"PYTHON_IMAGE={base}", "--build-arg", "ALLOW_UNPINNED_BASE=true",
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "DO NOT MATCH THE HASHES" in output, output[-3000:]


def test_a_requirement_without_a_hash_fails_the_build(docker_engine, tmp_path):
    """--require-hashes itself: pip checks a hash that is given anyway, but only this flag refuses an
    entry that has none."""
    base = ensure_base_image(docker_engine.host, "python3")
    unhashed = _locked_entry(PROBE_PACKAGE).split(" \\\n", 1)[0] + "\n"
    done = _build_stage(
        docker_engine.host, tmp_path, unhashed,
        "--build-arg", f"PYTHON_IMAGE={base}", "--build-arg", "ALLOW_UNPINNED_BASE=true",
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "Hashes are required in --require-hashes mode" in output, output[-3000:]


def test_a_base_not_named_by_digest_is_refused(docker_engine, tmp_path):
    base = ensure_base_image(docker_engine.host, "python3")
    done = _build_stage(
        docker_engine.host, tmp_path, _locked_entry(PROBE_PACKAGE), "--build-arg", f"PYTHON_IMAGE={base}"
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert f"PYTHON_IMAGE={base} is not pinned by digest" in output, output[-3000:]
