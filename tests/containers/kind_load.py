"""Load on the converged kind platform, driven as a user does: through ``kubectl port-forward``.

* :func:`forward` forwards one Service or pod to a free loopback port (kubectl picks it);
  :func:`forwarded` the backend, audit and sync Services, with their URLs as the E2E suite reads
  them (E2E_*_URL);
* :func:`run_e2e` runs the E2E suite (tests/e2e) once against them;
* :class:`ApiLoad` keeps ``clients`` users creating and listing tasks on the backend until stopped
  (each create publishes an event, so the consumers and their sidecars work too);
* :class:`ServiceLoad` keeps a light load on the pods a Service lists as ready, as kube-proxy
  spreads it (for a rollout, which a forward to the Service does not survive).

A port-forward to a Service reaches one of its pods: extra replicas an HPA adds get no share of this
load, which is enough to show the scale-out the hot pod causes and the scale-in after.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "todo"
FORWARDED = ("backend", "audit", "sync")
FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ")


@contextmanager
def forward(kubectl, target: str, port: int, namespace: str = NAMESPACE) -> Iterator[str]:
    """``http://127.0.0.1:<local port>`` while ``kubectl port-forward <target> :<port>`` runs (target:
    ``svc/<name>`` reaches one pod of the Service, ``pod/<name>`` that pod); /healthz answered first."""
    proc = subprocess.Popen(
        [kubectl.binary, "--kubeconfig", kubectl.kubeconfig, "-n", namespace, "port-forward",
         target, f":{port}", "--address", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        found = FORWARDING.search(line)
        assert found, f"kubectl port-forward {target}: {line}{proc.stdout.read() if proc.poll() else ''}"
        # kubectl writes a line per connection it handles: read them, or once the pipe is full
        # kubectl blocks and the forwarded port stops answering.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        url = f"http://127.0.0.1:{found.group(1)}"
        httpx.get(f"{url}/healthz", timeout=30).raise_for_status()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def forwarded(kubectl, services: tuple[str, ...] = FORWARDED) -> Iterator[dict[str, str]]:
    """``{"E2E_BACKEND_URL": "http://127.0.0.1:<port>", ...}`` while the forwards run."""
    with ExitStack() as stack:
        yield {
            f"E2E_{service.upper()}_URL": stack.enter_context(forward(kubectl, f"svc/{service}", 80))
            for service in services
        }


def run_e2e(urls: dict[str, str]) -> float:
    """The E2E suite once against the forwarded Services; its duration in seconds. Fails with its
    output if a test fails."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/e2e"],
        cwd=ROOT, env={**os.environ, **urls}, capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert done.returncode == 0, (
        f"E2E suite through port-forward failed:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"
    )
    return time.monotonic() - started


class ApiLoad:
    """``clients`` users creating and listing tasks on the backend in a thread, until :meth:`stop`."""

    def __init__(self, backend_url: str, clients: int = 12):
        self.url, self.clients = backend_url, clients
        self.requests = self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> ApiLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    async def _client(self) -> None:
        email, password = f"load-{uuid.uuid4().hex[:12]}@example.test", f"pw-{uuid.uuid4().hex}"
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            (
                await http.post("/api/auth/register", json={"email": email, "password": password})
            ).raise_for_status()
            login = await http.post("/api/auth/login", json={"email": email, "password": password})
            login.raise_for_status()
            http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            while not self._stop.is_set():
                try:
                    created = await http.post("/api/tasks", json={"title": "load"})
                    listed = await http.get("/api/tasks", params={"limit": 20})
                    self.requests += 2
                    self.failures += (created.status_code != 201) + (listed.status_code != 200)
                except httpx.HTTPError:
                    self.failures += 1

    async def _run(self) -> None:
        await asyncio.gather(*(self._client() for _ in range(self.clients)))


class ServiceLoad:
    """A steady, light load on one path of a Service as the Service spreads it, until :meth:`stop`:
    each request goes to a pod the Service's EndpointSlices list as ready at that moment (re-read
    before every request), through a port-forward to that pod.

    On kind users reach the API through port-forward (apps_exposure), and the NetworkPolicies admit
    no in-cluster client of it; a port-forward to the Service pins one pod, which a rollout replaces.
    Following the EndpointSlices is what kube-proxy does, so a request fails here when it would
    fail through the Service: a pod listed ready that does not answer, or a gap with none listed.
    """

    def __init__(self, kubectl, service: str, path: str, token: str):
        self.kubectl, self.service, self.path = kubectl, service, path
        self.headers = {"Authorization": f"Bearer {token}"}
        self.total, self.codes, self.failures, self.served = 0, {}, [], set()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ServiceLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> dict:
        """Stops the load; its summary: requests, answers by status, pods that answered, failures."""
        self._stop.set()
        self._thread.join(timeout=120)
        if self.error:
            raise self.error
        return {
            "total": self.total, "codes": self.codes, "pods": sorted(self.served),
            "failures": self.failures[:10],
        }  # fmt: skip

    def ready_pods(self) -> list[str]:
        slices = self.kubectl.json(
            "-n", NAMESPACE, "get", "endpointslices", "-l", f"kubernetes.io/service-name={self.service}"
        )["items"]
        return sorted(
            e["targetRef"]["name"] for s in slices for e in s.get("endpoints") or []
            if e.get("conditions", {}).get("ready") and e.get("targetRef", {}).get("kind") == "Pod"
        )  # fmt: skip

    def _record(self, pod: str, status: int | str, detail: str = "") -> None:
        self.total += 1
        self.codes[str(status)] = self.codes.get(str(status), 0) + 1
        if status == 200:
            self.served.add(pod)
        else:
            self.failures.append(f"{time.strftime('%H:%M:%S')} {pod or '-'} {status} {detail[:200]}")

    def _run(self) -> None:
        forwards: dict[str, tuple[ExitStack, str]] = {}
        turn = 0
        try:
            while not self._stop.is_set():
                pods = self.ready_pods()
                for gone in set(forwards) - set(pods):
                    forwards.pop(gone)[0].close()
                if not pods:
                    self._record("", "no ready endpoint")
                    time.sleep(0.5)
                    continue
                pod, turn = pods[turn % len(pods)], turn + 1
                try:
                    if pod not in forwards:
                        stack = ExitStack()
                        url = stack.enter_context(forward(self.kubectl, f"pod/{pod}", 8000))
                        forwards[pod] = (stack, url)
                    reply = httpx.get(forwards[pod][1] + self.path, headers=self.headers, timeout=10)
                    self._record(pod, reply.status_code, reply.text)
                except (httpx.HTTPError, AssertionError) as error:
                    self._record(pod, "error", repr(error))
                time.sleep(0.1)
        except BaseException as error:  # re-raised by stop(), in the test's thread
            self.error = error
        finally:
            for stack, _ in forwards.values():
                stack.close()


def pods(kubectl, service: str) -> list[dict]:
    """The pods of one of our services, terminating ones included."""
    return kubectl.json("-n", NAMESPACE, "get", "pods", "-l", f"app.kubernetes.io/name={service}")["items"]
