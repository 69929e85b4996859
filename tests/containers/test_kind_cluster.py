"""kind v0.33.0 creates a cluster here from the node image built here, and runs a pod of ours.

The ``kind_cluster`` fixture (tests/testbed/pytest_plugin_kind.py) runs the pinned kind binary
(``kind create cluster --image kindest/node:v1.36.3`` with the product's kind configuration) against
the test bed's Docker engine and waits for the node and CoreDNS to be Ready.  This test then loads the
services image (services/Dockerfile, built on the Debian base made here) with ``kind load``, runs the
backend in a namespace that enforces Pod Security ``restricted`` and reaches it the way a user would:
``kubectl port-forward``; a pod of that image resolves a Service's name through the cluster DNS.
CI stage: ``containers``.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time

import httpx
import pytest
from testbed.gobuild import KUBERNETES_VERSION
from testbed.images import ensure_services_image
from testbed.kind_cluster import kubectl_binary
from testbed.kind_node import NODE_IMAGE, preloaded_refs

pytestmark = pytest.mark.testbed

NAMESPACE = "restricted-smoke"

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: backend
  namespace: {namespace}
  labels: {{app: backend}}
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    seccompProfile: {{type: RuntimeDefault}}
  containers:
    - name: backend
      image: docker.io/library/{image}
      imagePullPolicy: Never
      args: [backend]
      ports: [{{containerPort: 8000}}]
      env:
        - {{name: JWT_SECRET, value: {jwt}}}
        - {{name: APP_API_TOKEN, value: {app_token}}}
        - {{name: DAPR_READY_CHECK, value: "false"}}
      readinessProbe:
        httpGet: {{path: /healthz, port: 8000}}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {{drop: [ALL]}}
"""


def test_the_node_runs_kubernetes_built_here(kind_cluster):
    nodes = kind_cluster.kubectl("get", "nodes", "-o", "jsonpath={.items[*].status.nodeInfo.kubeletVersion}")
    assert nodes.stdout.split() == [KUBERNETES_VERSION]
    images = kind_cluster.node_exec("crictl", "images", "-o", "json").stdout
    for ref in preloaded_refs():
        name, tag = ref.rsplit(":", 1)
        assert f'"{name}:{tag}"' in images, f"{ref} is not preloaded in {NODE_IMAGE}"
    # kubeadm deployed the control plane, kind the default CNI manifest, from those images: no pulls
    pods = kind_cluster.kubectl(
        "get",
        "pods",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={range .items[*]}{.spec.containers[0].image}{'\\n'}{end}",
    ).stdout.split()
    assert set(pods) <= set(preloaded_refs()), pods


#: prints "<name> <address>" or "<name> error <why>" for each name (exit 0, so the test shows which failed)
RESOLVE = """\
import socket, sys
for name in sys.argv[1:]:
    try:
        print(name, socket.gethostbyname(name))
    except OSError as exc:
        print(name, "error", exc)
"""


def test_a_pod_resolves_a_service_name_through_the_cluster_dns(kind_cluster, docker_engine):
    """CoreDNS (built here with only the plugins of kubeadm's Corefile) answers a Service's name, the
    short one through the pod's search path and the full one, with the Service's cluster IP."""
    image = ensure_services_image(docker_engine.host)
    kind_cluster.load_image(image)
    cluster_ip = kind_cluster.kubectl(
        "get", "service", "kubernetes", "-n", "default", "-o", "jsonpath={.spec.clusterIP}"
    ).stdout.strip()
    names = ("kubernetes", "kubernetes.default.svc.cluster.local")
    kind_cluster.kubectl("-n", "default", "wait", "--for=create", "serviceaccount/default", "--timeout=120s")
    kind_cluster.kubectl(
        "run", "dns-check", "-n", "default", f"--image=docker.io/library/{image}",
        "--image-pull-policy=Never", "--restart=Never", "--command", "--", "python", "-c", RESOLVE, *names,
    )  # fmt: skip
    try:
        done = kind_cluster.kubectl(
            "wait", "-n", "default", "--for=jsonpath={.status.phase}=Succeeded", "pod/dns-check",
            "--timeout=180s", check=False, timeout=210,
        )  # fmt: skip
        answers = kind_cluster.kubectl("logs", "-n", "default", "dns-check", check=False).stdout
        assert done.returncode == 0, f"{done.stderr}\n{answers}\n{kind_cluster.diagnostics()}"
        assert answers.split("\n")[: len(names)] == [f"{name} {cluster_ip}" for name in names], answers
    finally:
        kind_cluster.kubectl("delete", "pod", "-n", "default", "dns-check", "--now", check=False)


def test_a_restricted_pod_of_the_services_image_answers_through_port_forward(kind_cluster, docker_engine):
    image = ensure_services_image(docker_engine.host)
    kind_cluster.load_image(image)
    kind_cluster.kubectl("create", "namespace", NAMESPACE)
    kind_cluster.kubectl(
        "label", "namespace", NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    # a pod is refused without the namespace's default ServiceAccount (created by a controller, later)
    kind_cluster.kubectl("-n", NAMESPACE, "wait", "--for=create", "serviceaccount/default", "--timeout=120s")
    # the namespace really enforces: a pod that keeps its capabilities is refused
    refused = kind_cluster.kubectl(
        "run",
        "privileged",
        "-n",
        NAMESPACE,
        f"--image=docker.io/library/{image}",
        "--restart=Never",
        check=False,
    )
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr

    manifest = POD.format(
        namespace=NAMESPACE, image=image, jwt=secrets.token_urlsafe(32), app_token=secrets.token_urlsafe(32)
    )
    kind_cluster.kubectl("apply", "-f", "-", input=manifest)
    ready = kind_cluster.kubectl(
        "wait",
        "-n",
        NAMESPACE,
        "--for=condition=Ready",
        "pod/backend",
        "--timeout=240s",
        check=False,
        timeout=270,
    )
    if ready.returncode != 0:
        logs = kind_cluster.kubectl("logs", "-n", NAMESPACE, "backend", "--previous", check=False)
        last_run = logs.stdout + logs.stderr
        pytest.fail(f"{ready.stderr}\nbackend's last run:\n{last_run}\n{kind_cluster.diagnostics()}")

    forward = subprocess.Popen(
        [
            str(kubectl_binary()),
            "--kubeconfig",
            str(kind_cluster.kubeconfig),
            "--context",
            kind_cluster.context,
            "port-forward",
            "-n",
            NAMESPACE,
            "pod/backend",
            ":8000",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, (
            f"kubectl port-forward said {line!r}; stderr: {forward.stderr.read() if forward.poll() else ''}"
        )
        reply = None
        for _ in range(10):
            try:
                reply = httpx.get(f"http://127.0.0.1:{match.group(1)}/healthz", timeout=10)
                break
            except httpx.TransportError:
                time.sleep(1)
        assert reply is not None and reply.status_code == 200, reply
        assert reply.json() == {"status": "ok"}
    finally:
        forward.terminate()
        forward.wait(timeout=10)

    # and it runs as the restricted profile says: UID 10001, no capabilities, a seccomp filter
    status = kind_cluster.node_exec(
        "bash",
        "-c",
        "for p in $(pgrep -x todo-service); do grep -E '^(Uid|CapEff|Seccomp):' /proc/$p/status; done",
    ).stdout
    assert "Uid:\t10001\t10001\t10001\t10001" in status, status
    assert "CapEff:\t0000000000000000" in status, status
    assert "Seccomp:\t2" in status, status
