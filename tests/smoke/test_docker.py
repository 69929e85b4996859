"""The test bed's Docker engine builds an image from a local context (no registry needed)."""

import os
import shutil
import subprocess
import uuid

import pytest

pytestmark = pytest.mark.testbed


def test_build_an_image_without_a_registry(docker_engine, tmp_path):
    docker = shutil.which("docker")
    assert docker, "docker CLI missing: apt-get install -y docker.io"
    env = os.environ | {"DOCKER_HOST": docker_engine.host, "DOCKER_BUILDKIT": "0"}
    marker = uuid.uuid4().hex
    (tmp_path / "marker.txt").write_text(marker)
    (tmp_path / "Dockerfile").write_text(f"FROM scratch\nCOPY marker.txt /marker.txt\nLABEL smoke={marker}\n")
    tag = f"testbed-smoke:{marker[:12]}"
    build = subprocess.run(
        [docker, "build", "--network", "host", "-t", tag, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    try:
        label = subprocess.run(
            [docker, "image", "inspect", "-f", '{{ index .Config.Labels "smoke" }}', tag],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert label == marker
    finally:
        subprocess.run([docker, "image", "rm", "-f", tag], env=env, capture_output=True)
