"""What the Dapr sidecar and the app containers need from the apps and dapr roles, for every
inventory: the objects are rendered by tests/deploy/render_apps.yml (the inventory's own variables,
the apps preflight first, no cluster), the Dapr chart by the pinned helm from the upstream archive.

Read against Dapr 1.18 (pkg/injector/patcher, pkg/runtime, pkg/operator/api):
- the injector adds the API and app tokens to the daprd container only (sidecar_container.go), so
  the app containers must take them from the Secrets themselves;
- daprd's built-in "kubernetes" secret store needs a service-account token to reach the API server,
  and the pods mount none, so the store is switched off; the pub/sub component's secretKeyRefs
  still resolve, because in Kubernetes mode the operator reads them (processComponentSecrets, only
  for the store "kubernetes" or none) and daprd decodes what it receives (processor/secret);
- daprd gets capabilities.drop [ALL] only from SIDECAR_DROP_ALL_CAPABILITIES=true (chart value
  dapr_sidecar_injector.sidecarDropALLCapabilities); the `restricted` namespace rejects it otherwise.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from deploy_support import ENVIRONMENTS, ROOT, TEST_SECRETS, render_apps

CLOUDS = ["oke", "aks", "gke"]
PULL_USER = "tenancyns/ci-puller"
PULL_PASSWORD = "test-pull-token-not-real"  # noqa: S105 - test-only value
PULL_ENV = {"TODO_REGISTRY_PULL_USERNAME": PULL_USER, "TODO_REGISTRY_PULL_PASSWORD": PULL_PASSWORD}
NO_PULL_ENV = dict.fromkeys(PULL_ENV, "")
DAPR_CHART = "dapr-1.18.3.tgz"


def _render(env_name: str, out: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return render_apps(env_name, out, extra_env)


def _render_all(base: Path, envs: list[str], extra_env: dict[str, str]) -> dict[str, Path]:
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(envs, pool.map(lambda e: _render(e, base / e, extra_env), envs), strict=True))
    for env_name, result in results.items():
        assert result.returncode == 0, (
            f"{env_name}: render failed\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
        )
        assert PULL_PASSWORD not in result.stdout + result.stderr, (
            f"{env_name}: the pull password was printed"
        )
    return {env_name: base / env_name for env_name in envs}


@pytest.fixture(scope="module")
def rendered_all(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every inventory rendered with the pull-secret credentials in the environment."""
    return _render_all(tmp_path_factory.mktemp("render"), ENVIRONMENTS, PULL_ENV)


@pytest.fixture(params=ENVIRONMENTS)
def rendered(request: pytest.FixtureRequest, rendered_all: dict[str, Path]) -> tuple[str, Path]:
    return request.param, rendered_all[request.param]


def _load(out: Path, name: str) -> list[dict] | dict:
    return json.loads((out / name).read_text())


def _deployments(out: Path) -> list[dict]:
    deployments = [o for o in _load(out, "services.json") if o["kind"] == "Deployment"]
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(
        ["backend", "audit", "recurring-task", "notification", "sync"]
    )
    return deployments


def _app_container(deployment: dict) -> dict:
    name = deployment["metadata"]["name"]
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return container


def _pod_templates(out: Path) -> dict[str, dict]:
    """Every pod template of ours: the services, the migration Job and the in-cluster PostgreSQL."""
    templates = {d["metadata"]["name"]: d["spec"]["template"] for d in _deployments(out)}
    (job,) = _load(out, "migrate.json")
    templates["migrate"] = job["spec"]["template"]
    (postgres,) = [o for o in _load(out, "postgres.json") if o["kind"] == "StatefulSet"]
    templates["postgres"] = postgres["spec"]["template"]
    return templates


# --- item 1: daprd without a service-account token -------------------------------------------


def test_sidecars_without_a_token_run_without_the_builtin_kubernetes_secret_store(rendered) -> None:
    env_name, out = rendered
    for deployment in _deployments(out):
        pod = deployment["spec"]["template"]
        annotations = pod["metadata"]["annotations"]
        assert annotations["dapr.io/enabled"] == "true"
        # The decision: no token in the pods, so no built-in store in daprd (it would exit at start).
        assert pod["spec"]["automountServiceAccountToken"] is False
        assert annotations.get("dapr.io/disable-builtin-k8s-secret-store") == "true", (
            f"{env_name}/{deployment['metadata']['name']}: daprd would start the built-in Kubernetes "
            "secret store with no service-account token and exit"
        )


def test_the_pubsub_components_secrets_are_left_to_the_operator() -> None:
    """With the built-in store off, the component's secretKeyRefs resolve only through the operator,
    which resolves them for the secret store "kubernetes" (or none): the role must not name another."""
    from ansible_collections.todo.platform.plugins.modules import dapr_kafka_pubsub

    options = yaml.safe_load(dapr_kafka_pubsub.DOCUMENTATION)["options"]
    assert options["secret_store"]["default"] == "kubernetes"
    tasks = yaml.safe_load((ROOT / "roles" / "dapr" / "tasks" / "configure.yml").read_text())
    calls = [t["todo.platform.dapr_kafka_pubsub"] for t in tasks if "todo.platform.dapr_kafka_pubsub" in t]
    assert calls, (
        "the dapr role no longer creates the pub/sub components with todo.platform.dapr_kafka_pubsub"
    )
    for args in calls:
        assert args.get("secret_store", "kubernetes") == "kubernetes"


# --- item 3: the app containers' Dapr tokens -------------------------------------------------


def test_app_containers_read_the_dapr_tokens_from_the_secrets_the_sidecar_uses(rendered) -> None:
    env_name, out = rendered
    secrets = {s["metadata"]["name"]: s for s in _load(out, "secrets.json")}
    expected_values = {
        "DAPR_API_TOKEN": TEST_SECRETS["TODO_DAPR_API_TOKEN"],
        "APP_API_TOKEN": TEST_SECRETS["TODO_APP_API_TOKEN"],
    }
    for deployment in _deployments(out):
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        env = {e["name"]: e for e in _app_container(deployment).get("env", [])}
        for variable, annotation in (
            ("DAPR_API_TOKEN", "dapr.io/api-token-secret"),
            ("APP_API_TOKEN", "dapr.io/app-token-secret"),
        ):
            where = f"{env_name}/{deployment['metadata']['name']}: {variable}"
            assert variable in env, f"{where} is not given to the app container"
            # The injector reads key `token` of the annotated Secret for daprd: the app reads the same.
            assert env[variable] == {
                "name": variable,
                "valueFrom": {"secretKeyRef": {"name": annotations[annotation], "key": "token"}},
            }, where
            secret = secrets[annotations[annotation]]
            assert secret["stringData"]["token"] == expected_values[variable], where


def test_the_services_read_the_token_variables_the_pods_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from todo.common.settings import ServiceSettings

    monkeypatch.setenv("DAPR_API_TOKEN", "dapr-token-from-env")
    monkeypatch.setenv("APP_API_TOKEN", "app-token-from-env")
    settings = ServiceSettings()
    assert settings.dapr_api_token.get_secret_value() == "dapr-token-from-env"
    assert settings.app_api_token.get_secret_value() == "app-token-from-env"


# --- item 11: image pull secret --------------------------------------------------------------


def test_every_pod_of_a_cloud_names_the_pull_secret_built_from_the_environment(rendered) -> None:
    env_name, out = rendered
    templates = _pod_templates(out)
    pull_secrets = [s for s in _load(out, "secrets.json") if s["type"] == "kubernetes.io/dockerconfigjson"]
    if env_name not in CLOUDS:
        assert pull_secrets == []
        for name, template in templates.items():
            assert "imagePullSecrets" not in template["spec"], f"{env_name}/{name}"
        return
    (secret,) = pull_secrets
    assert secret["metadata"]["name"] == "todo-registry"
    for name, template in templates.items():
        assert template["spec"].get("imagePullSecrets") == [{"name": "todo-registry"}], f"{env_name}/{name}"
    image = _app_container(_deployments(out)[0])["image"]
    auths = json.loads(secret["stringData"][".dockerconfigjson"])["auths"]
    assert list(auths) == [image.split("/")[0]], f"{env_name}: the login is not for the image's registry"
    (login,) = auths.values()
    assert (login["username"], login["password"]) == (PULL_USER, PULL_PASSWORD)
    assert base64.b64decode(login["auth"]).decode() == f"{PULL_USER}:{PULL_PASSWORD}"


def test_without_pull_credentials_oke_stops_and_aks_gke_use_the_node_identity(tmp_path: Path) -> None:
    base = tmp_path / "no-pull"
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(
            zip(CLOUDS, pool.map(lambda e: _render(e, base / e, NO_PULL_ENV), CLOUDS), strict=True)
        )
    oke = results["oke"]
    assert oke.returncode != 0, (
        "OKE rendered without a pull secret: its private OCIR images could not be pulled"
    )
    assert "TODO_REGISTRY_PULL_USERNAME" in oke.stdout and "TODO_REGISTRY_PULL_PASSWORD" in oke.stdout, (
        oke.stdout[-3000:]
    )
    assert "apps_image_pull_secret 'todo-registry' needs" in oke.stdout
    for env_name in ("aks", "gke"):
        result = results[env_name]
        assert result.returncode == 0, f"{env_name}\n{result.stdout[-3000:]}"
        for name, template in _pod_templates(base / env_name).items():
            assert "imagePullSecrets" not in template["spec"], f"{env_name}/{name}"


# --- item 2: the injected daprd under the `restricted` Pod Security level ---------------------


def _charts_dir() -> Path:
    try:
        from testbed.kube import charts_dir
    except ImportError:  # older test bed: the charts sit beside the CRDs
        from testbed.kube import crds_dir

        return crds_dir().parent / "charts"
    return charts_dir()


@pytest.fixture(scope="module")
def helm() -> Path:
    from testbed import gobuild

    return gobuild.ensure_built("helm") / "helm"


def _render_dapr_chart(helm: Path, values: Path, tmp_path: Path) -> list[dict]:
    archive = _charts_dir() / DAPR_CHART
    assert archive.is_file(), f"missing chart archive {archive}"
    result = subprocess.run(
        [str(helm), "template", "dapr", str(archive), "--namespace", "dapr-system", "--values", str(values)],
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=300,
        check=False,
        env={
            **os.environ,
            "HELM_CACHE_HOME": str(tmp_path / "cache"),
            "HELM_CONFIG_HOME": str(tmp_path / "config"),
            "HELM_DATA_HOME": str(tmp_path / "data"),
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _injector_env(objects: list[dict]) -> dict[str, str]:
    (injector,) = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "dapr-sidecar-injector"
    ]
    (container,) = injector["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


@pytest.mark.testbed
def test_the_chart_archive_is_the_pinned_release() -> None:
    with tarfile.open(_charts_dir() / DAPR_CHART) as tar:
        chart = yaml.safe_load(tar.extractfile("dapr/Chart.yaml").read())
    defaults = yaml.safe_load(Path(ROOT / "roles" / "dapr" / "defaults" / "main.yml").read_text())
    assert chart["version"] == defaults["dapr_chart_version"]


@pytest.mark.testbed
def test_the_injector_drops_all_capabilities_and_runs_daprd_as_non_root(rendered, helm, tmp_path) -> None:
    env_name, out = rendered
    env = _injector_env(_render_dapr_chart(helm, out / "dapr-values.json", tmp_path))
    # What the injector turns into daprd's securityContext (pkg/injector/service/config.go).
    assert env["SIDECAR_DROP_ALL_CAPABILITIES"] == "true", (
        f"{env_name}: daprd keeps the runtime's capabilities"
    )
    assert env["SIDECAR_RUN_AS_NON_ROOT"] == "true", env_name


def daprd_container(injector_env: dict[str, str], pod_annotations: dict[str, str]) -> dict:
    """The parts of the daprd container the `restricted` level checks, as Dapr 1.18's injector builds
    them (pkg/injector/patcher/sidecar_container.go: allowPrivilegeEscalation always false,
    runAsNonRoot and readOnlyRootFilesystem from the injector's environment, seccomp from the
    dapr.io/sidecar-seccomp-profile-type annotation, drop ALL only with SIDECAR_DROP_ALL_CAPABILITIES)."""
    security: dict = {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": injector_env["SIDECAR_RUN_AS_NON_ROOT"] == "true",
        "readOnlyRootFilesystem": injector_env["SIDECAR_READ_ONLY_ROOT_FILESYSTEM"] == "true",
    }
    if pod_annotations.get("dapr.io/sidecar-seccomp-profile-type"):
        security["seccompProfile"] = {"type": pod_annotations["dapr.io/sidecar-seccomp-profile-type"]}
    if injector_env["SIDECAR_DROP_ALL_CAPABILITIES"] == "true":
        security["capabilities"] = {"drop": ["ALL"]}
    return {
        "name": "daprd",
        "image": "ghcr.io/dapr/daprd:1.18.3",
        "ports": [
            {"name": "dapr-http", "containerPort": 3500},
            {"name": "dapr-metrics", "containerPort": 9090},
        ],
        "volumeMounts": [
            {
                "name": "dapr-identity-token",
                "mountPath": "/var/run/secrets/dapr.io/sentrytoken",
                "readOnly": True,
            }
        ],
        "securityContext": security,
    }


@pytest.mark.testbed
def test_the_restricted_namespace_admits_an_injected_pod(rendered, helm, kube, tmp_path) -> None:
    """A pod of each service with the daprd container the injector would add, sent to the test
    bed's kube-apiserver as a server-side dry run in a namespace that enforces `restricted`: the
    API server's own Pod Security admission decides."""
    env_name, out = rendered
    injector_env = _injector_env(_render_dapr_chart(helm, out / "dapr-values.json", tmp_path))
    namespace = "psa-restricted-check"
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }
    (tmp_path / "ns.json").write_text(json.dumps(manifest))
    kube.kubectl("apply", "--server-side", "--field-manager=psa-check", "-f", str(tmp_path / "ns.json"))
    for deployment in _deployments(out):
        template = deployment["spec"]["template"]
        spec = json.loads(json.dumps(template["spec"]))
        spec["containers"].append(daprd_container(injector_env, template["metadata"]["annotations"]))
        spec["volumes"] = [
            *spec.get("volumes", []),
            {
                "name": "dapr-identity-token",
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "audience": "spiffe://cluster.local/ns/dapr-system/dapr-sentry",
                                "expirationSeconds": 7200,
                                "path": "token",
                            }
                        }
                    ]
                },
            },
        ]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{deployment['metadata']['name']}-psa",
                "namespace": namespace,
                "labels": template["metadata"]["labels"],
            },
            "spec": spec,
        }
        path = tmp_path / f"{deployment['metadata']['name']}.json"
        path.write_text(json.dumps(pod))
        result = kube.kubectl("create", "--dry-run=server", "-f", str(path), check=False)
        assert result.returncode == 0, f"{env_name}/{deployment['metadata']['name']}: {result.stderr}"


# --- issue 17 item 8: graceful shutdown --------------------------------------------------------


def test_app_containers_drain_before_sigterm_within_the_grace_period(rendered) -> None:
    """preStop sleeps while the endpoint removal propagates; the grace period covers that sleep, the
    app's drain (SHUTDOWN_DRAIN_SECONDS default 5) and uvicorn's wait for requests in flight (20)."""
    _env, out = rendered
    for deployment in _deployments(out):
        pod = deployment["spec"]["template"]["spec"]
        sleep = _app_container(deployment)["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert sleep >= 5, deployment["metadata"]["name"]
        assert pod["terminationGracePeriodSeconds"] > sleep + 5 + 20, deployment["metadata"]["name"]
