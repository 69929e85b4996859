"""The services image (services/Dockerfile) builds here without a registry and runs locked down.

Built with the legacy builder on the Debian ``python3`` base made by debootstrap (its ``PYTHON_IMAGE``
build argument), cached in the tool cache by content (testbed.images).  It runs the way the apps role
runs it on Kubernetes: read-only root file system, no capabilities, UID/GID 10001, configuration and
secrets from the environment and mounted files.  The database is the test bed's PostgreSQL, reached over
the host network (loopback).
"""

import os
import secrets
import shutil
import subprocess
import uuid

import httpx
import pytest
from testbed.core import free_port
from testbed.images import ensure_services_image
from testbed.polling import eventually

pytestmark = pytest.mark.testbed

LOCKED_DOWN = ["--read-only", "--cap-drop", "ALL", "--user", "10001:10001", "--network", "host"]


def _docker(host: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    docker = shutil.which("docker")
    assert docker, "docker CLI missing: apt-get install -y docker.io"
    return subprocess.run(
        [docker, *args],
        env=os.environ | {"DOCKER_HOST": host},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def services_image(docker_engine) -> str:
    return ensure_services_image(docker_engine.host)


@pytest.fixture
def secret_files(tmp_path, pg):
    """DATABASE_URL, JWT_SECRET and APP_API_TOKEN as files readable by UID 10001 (as a mounted
    Secret would be); without the app token a service refuses to start."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    secrets_dir.chmod(0o755)
    db = pg.create_database(f"img_{uuid.uuid4().hex[:8]}")
    for name, value in (
        ("database-url", db),
        ("jwt-secret", secrets.token_urlsafe(48)),
        ("app-api-token", secrets.token_urlsafe(32)),
    ):
        (secrets_dir / name).write_text(value)
        (secrets_dir / name).chmod(0o644)
    return secrets_dir


def test_image_runs_as_10001_with_the_services_installed(docker_engine, services_image):
    done = _docker(
        docker_engine.host, "run", "--rm", *LOCKED_DOWN, "--entrypoint", "python", services_image,
        "-c", "import os, todo.cli; print(os.getuid(), os.getgid())",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["10001", "10001"]
    user = _docker(docker_engine.host, "image", "inspect", "-f", "{{.Config.User}}", services_image)
    assert user.stdout.strip() == "10001:10001"


def test_backend_migrates_and_answers_health_and_readiness(docker_engine, services_image, secret_files):
    host = docker_engine.host
    mount = ["-v", f"{secret_files}:/run/secrets/todo:ro"]
    files = ["-e", "DATABASE_URL_FILE=/run/secrets/todo/database-url"]
    migrate = _docker(
        host,
        "run",
        "--rm",
        *LOCKED_DOWN,
        *mount,
        *files,
        "--entrypoint",
        "todo-migrate",
        services_image,
        "all",
    )
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]

    port = free_port()
    name = f"tb-backend-{uuid.uuid4().hex[:8]}"
    run = _docker(
        host, "run", "-d", "--name", name, *LOCKED_DOWN, *mount, *files,
        "-e", "JWT_SECRET_FILE=/run/secrets/todo/jwt-secret",
        "-e", "APP_API_TOKEN_FILE=/run/secrets/todo/app-api-token",
        "-e", "HOST=127.0.0.1", "-e", f"PORT={port}",
        # no Dapr sidecar here: readiness checks the database only
        "-e", "DAPR_READY_CHECK=false",
        services_image, "backend",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    try:

        def answering() -> tuple[httpx.Response, httpx.Response]:
            state = _docker(host, "inspect", "-f", "{{.State.Status}}", name).stdout.strip()
            if state != "running":  # exited: waiting longer cannot help
                raise RuntimeError(
                    f"backend container {state}: " + _docker(host, "logs", name).stderr[-3000:]
                )
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3)
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            assert health.status_code == 200 and ready.status_code == 200, (health.text, ready.text)
            return health, ready

        health, ready = eventually(
            answering,
            "the backend healthy and ready",
            within=90,
            interval=1,
            ignoring=(httpx.TransportError,),
        )
        assert health.json() == {"status": "ok"}
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok"}
        # the registration path works end to end against the migrated database
        reply = httpx.post(
            f"http://127.0.0.1:{port}/api/auth/register",
            json={"email": f"{name}@example.com", "password": secrets.token_urlsafe(16)},
            timeout=10,
        )
        assert reply.status_code == 201, reply.text
    finally:
        _docker(host, "rm", "-f", name)
