"""Load on the converged kind platform, driven as a user does: through ``kubectl port-forward``.

* :func:`forwarded` forwards the backend, audit and sync Services to free loopback ports (kubectl
  picks them: ``:80``) and gives their URLs as the E2E suite reads them (E2E_*_URL);
* :func:`run_e2e` runs the E2E suite (tests/e2e) once against them;
* :class:`ApiLoad` keeps ``clients`` users creating and listing tasks on the backend until stopped
  (each create publishes an event, so the consumers and their sidecars work too).

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
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "todo"
FORWARDED = ("backend", "audit", "sync")
FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ")


@contextmanager
def forwarded(kubectl, services: tuple[str, ...] = FORWARDED) -> Iterator[dict[str, str]]:
    """``{"E2E_BACKEND_URL": "http://127.0.0.1:<port>", ...}`` while the forwards run."""
    procs: list[subprocess.Popen] = []
    urls: dict[str, str] = {}
    try:
        for service in services:
            proc = subprocess.Popen(
                [kubectl.binary, "--kubeconfig", kubectl.kubeconfig, "-n", NAMESPACE, "port-forward",
                 f"svc/{service}", ":80", "--address", "127.0.0.1"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            procs.append(proc)
            line = proc.stdout.readline()
            found = FORWARDING.search(line)
            assert found, (
                f"kubectl port-forward svc/{service}: {line}{proc.stdout.read() if proc.poll() else ''}"
            )
            # kubectl writes a line per connection it handles: read them, or once the pipe is full
            # kubectl blocks and the forwarded port stops answering.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            url = f"http://127.0.0.1:{found.group(1)}"
            httpx.get(f"{url}/healthz", timeout=30).raise_for_status()
            urls[f"E2E_{service.upper()}_URL"] = url
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


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
