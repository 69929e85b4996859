"""The upgrade runbook on the test bed's kwok cluster: the new image's migration Job runs first,
the services roll out, and an image whose pods never become Ready (kwok stage
tests/testbed/kwok-stages/pod-never-ready.yaml) is rolled back by the runbook, which then fails
saying so."""

from __future__ import annotations

import json

import pytest
from test_dry_run import _ensure_namespaces, dry_run

pytestmark = pytest.mark.testbed

NAMESPACE = "todo"
# kwok runs no container: these references are never pulled
RELEASE_1 = "localhost/todo-services:upgrade-test-1"
RELEASE_2 = "localhost/todo-services:upgrade-test-2"
NEVER_READY = "localhost/todo-services:never-ready"


def deployment(name: str, image: str) -> dict:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "todo-platform"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    }


def images(kube) -> dict[str, str]:
    out = kube.kubectl(
        "-n", NAMESPACE, "get", "deploy", "-l", "app.kubernetes.io/part-of=todo-platform", "-o", "json"
    ).stdout
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
        for d in json.loads(out)["items"]
    }


def upgrade(kube, tmp_path, image: str, timeout: int):
    return dry_run(
        kube,
        "kind",
        tmp_path,
        {"upgrade_image": image, "upgrade_wait_timeout": timeout},
        playbook="playbooks/runbooks/upgrade.yml",
        check=False,
    )


@pytest.fixture
def services(kube, tmp_path):
    _ensure_namespaces(kube)
    manifest = tmp_path / "services.json"
    manifest.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [deployment(n, RELEASE_1) for n in ("backend", "audit")],
            }
        )
    )
    kube.kubectl("apply", "-f", str(manifest))
    kube.kubectl("-n", NAMESPACE, "rollout", "status", "deploy/backend", "deploy/audit", "--timeout=120s")
    yield kube
    kube.kubectl(
        "-n", NAMESPACE, "delete", "deploy", "backend", "audit", "--ignore-not-found", "--wait=false"
    )
    kube.kubectl(
        "-n",
        NAMESPACE,
        "delete",
        "job",
        "-l",
        "app.kubernetes.io/component=migration",
        "--ignore-not-found",
        "--wait=false",
    )


def test_an_upgrade_migrates_first_then_rolls_out_and_a_never_ready_image_is_rolled_back(services, tmp_path):
    kube = services
    result = upgrade(kube, tmp_path, RELEASE_2, 120)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert images(kube) == {"backend": RELEASE_2, "audit": RELEASE_2}
    jobs = json.loads(
        kube.kubectl(
            "-n", NAMESPACE, "get", "job", "-l", "app.kubernetes.io/component=migration", "-o", "json"
        ).stdout
    )["items"]
    migrate = [j for j in jobs if j["spec"]["template"]["spec"]["containers"][0]["image"] == RELEASE_2]
    assert migrate and any(
        c["type"] == "Complete" and c["status"] == "True" for c in migrate[0]["status"].get("conditions", [])
    ), jobs

    result = upgrade(kube, tmp_path, NEVER_READY, 20)
    assert result.returncode != 0
    assert f"Upgrade to {NEVER_READY} rolled back" in result.stdout, result.stdout[-5000:]
    assert "Error while evaluating conditional" not in result.stdout, result.stdout[-5000:]
    assert images(kube) == {"backend": RELEASE_2, "audit": RELEASE_2}
    kube.kubectl("-n", NAMESPACE, "rollout", "status", "deploy/backend", "deploy/audit", "--timeout=60s")


def test_an_upgrade_without_an_image_says_what_to_pass(services, tmp_path):
    result = upgrade(services, tmp_path, "not an image", 10)
    assert result.returncode != 0
    assert "pass -e upgrade_image=" in result.stdout
