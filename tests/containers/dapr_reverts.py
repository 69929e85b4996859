"""The three Dapr fixes of issue 15, each reverted on a running cluster: the revert must fail.

After the platform converged on the kind cluster, each check copies one service's Deployment as the
apps role rendered it (``audit``) under a name and app id of its own, takes one fix out of the copy
(or, for the injector setting, out of the injector), and returns the line that shows the failure:

* ``dapr.io/disable-builtin-k8s-secret-store`` removed: daprd (no service-account token in the pod)
  fails its built-in Kubernetes secret store and exits;
* ``sidecarDropALLCapabilities`` false in the injector (its SIDECAR_DROP_ALL_CAPABILITIES, which the
  chart value sets): the namespace's Pod Security ``restricted`` rejects the pod;
* ``DAPR_API_TOKEN`` / ``APP_API_TOKEN`` removed from the app container: the service refuses to
  start (it fails closed; before that, every publish and invocation answered 401).

Each copy is deleted afterwards and the injector restored, so the converged platform is unchanged.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

SOURCE = "audit"
NAMESPACE = "todo"
INJECTOR = ("dapr-system", "dapr-sidecar-injector")
TIMEOUT = 300


class Kubectl:
    def __init__(self, binary: Path, kubeconfig: Path):
        self.binary, self.kubeconfig = str(binary), str(kubeconfig)

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> str:
        done = subprocess.run(
            [self.binary, "--kubeconfig", self.kubeconfig, *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=TIMEOUT,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr.strip() or done.stdout}")
        return done.stdout

    def json(self, *args: str) -> dict:
        return json.loads(self(*args, "-o", "json"))


def _copy_of_source(kubectl: Kubectl, name: str) -> dict:
    """The source Deployment under ``name``: own selector, own Dapr app id, one replica."""
    source = kubectl.json("-n", NAMESPACE, "get", "deployment", SOURCE)
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NAMESPACE}}
    spec = copy.deepcopy(source["spec"])
    spec["replicas"] = 1
    spec["selector"] = {"matchLabels": {"app.kubernetes.io/name": name}}
    template = spec["template"]["metadata"]
    template["labels"]["app.kubernetes.io/name"] = name
    # A Dapr app id of its own: the operator keeps one "<app-id>-dapr" Service per app id.
    template["annotations"]["dapr.io/app-id"] = name
    dep["spec"] = spec
    return dep


def _apply(kubectl: Kubectl, dep: dict) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(dep))


def _delete(kubectl: Kubectl, name: str) -> None:
    kubectl("-n", NAMESPACE, "delete", "deployment", name, "--ignore-not-found", "--wait=true")


def _poll(what: str, probe: Callable[[], str | None]) -> str:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(3)
    raise AssertionError(f"with the fix reverted, no failure showed within {TIMEOUT}s: {what}")


def _pods(kubectl: Kubectl, name: str) -> list[dict]:
    return kubectl.json("-n", NAMESPACE, "get", "pods", "-l", f"app.kubernetes.io/name={name}")["items"]


def _failure_line(logs: str, needle: str | None) -> str | None:
    """The first line whose message holds ``needle`` (JSON logs: the msg/message field), or with no
    needle the first line logged at level fatal."""
    for line in logs.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            if needle and needle.lower() in line.lower():
                return line
            continue
        message = str(record.get("msg", record.get("message", "")))
        if needle is None and record.get("level") == "fatal":
            return line
        if needle and needle.lower() in message.lower():
            return line
    return None


def _crashed_container_line(
    kubectl: Kubectl, name: str, container: str, needle: str | None
) -> Callable[[], str | None]:
    """A probe: once ``container`` has exited, its failure line (see :func:`_failure_line`)."""

    def probe() -> str | None:
        for pod in _pods(kubectl, name):
            for status in pod.get("status", {}).get("containerStatuses", []):
                if status["name"] != container:
                    continue
                restarted = status.get("restartCount", 0) > 0
                if not restarted and "terminated" not in status.get("state", {}):
                    continue
                previous = ["--previous"] if restarted else []
                logs = kubectl(
                    "-n", NAMESPACE, "logs", pod["metadata"]["name"], "-c", container, *previous, check=False
                )
                found = _failure_line(logs, needle)
                if found:
                    return found
        return None

    return probe


def revert_secret_store_annotation(kubectl: Kubectl) -> str:
    name = f"{SOURCE}-revert-secret-store"
    dep = _copy_of_source(kubectl, name)
    del dep["spec"]["template"]["metadata"]["annotations"]["dapr.io/disable-builtin-k8s-secret-store"]
    _apply(kubectl, dep)
    try:
        line = _poll("daprd exits", _crashed_container_line(kubectl, name, "daprd", None))
        # The built-in secret store is the component named "kubernetes".
        assert "kubernetes" in line, f"daprd exited for another reason: {line}"
        return line
    finally:
        _delete(kubectl, name)


def revert_app_tokens(kubectl: Kubectl) -> str:
    name = f"{SOURCE}-revert-tokens"
    dep = _copy_of_source(kubectl, name)
    app = next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == SOURCE)
    app["env"] = [e for e in app["env"] if e["name"] not in ("DAPR_API_TOKEN", "APP_API_TOKEN")]
    _apply(kubectl, dep)
    try:
        return _poll("the service exits", _crashed_container_line(kubectl, name, SOURCE, "APP_API_TOKEN"))
    finally:
        _delete(kubectl, name)


def _injector_drop_all(kubectl: Kubectl, value: str) -> None:
    namespace, deployment = INJECTOR
    setting = f"SIDECAR_DROP_ALL_CAPABILITIES={value}"
    kubectl("-n", namespace, "set", "env", f"deployment/{deployment}", setting)
    kubectl("-n", namespace, "rollout", "status", f"deployment/{deployment}", f"--timeout={TIMEOUT}s")


def revert_drop_all_capabilities(kubectl: Kubectl) -> str:
    name = f"{SOURCE}-revert-drop-all"
    namespace, deployment = INJECTOR
    injector = kubectl.json("-n", namespace, "get", "deployment", deployment)
    env = injector["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "SIDECAR_DROP_ALL_CAPABILITIES", "value": "true"} in env, "the injector does not drop ALL"
    _injector_drop_all(kubectl, "false")
    try:
        _apply(kubectl, _copy_of_source(kubectl, name))

        def rejected() -> str | None:
            # A pod created while the injector's new replica was not yet serving has no sidecar
            # (the webhook ignores failures): delete it, so that the ReplicaSet tries again.
            for pod in _pods(kubectl, name):
                if "daprd" not in {c["name"] for c in pod["spec"]["containers"]}:
                    kubectl("-n", NAMESPACE, "delete", "pod", pod["metadata"]["name"], "--wait=false")
            events = kubectl.json("-n", NAMESPACE, "get", "events", "--field-selector", "reason=FailedCreate")
            for event in events["items"]:
                if event["involvedObject"]["name"].startswith(name) and "PodSecurity" in event["message"]:
                    return event["message"]
            return None

        return _poll("Pod Security rejects the pod", rejected)
    finally:
        _delete(kubectl, name)
        _injector_drop_all(kubectl, "true")


REVERTS = {
    "dapr.io/disable-builtin-k8s-secret-store removed": revert_secret_store_annotation,
    "sidecarDropALLCapabilities false": revert_drop_all_capabilities,
    "DAPR_API_TOKEN/APP_API_TOKEN removed": revert_app_tokens,
}
