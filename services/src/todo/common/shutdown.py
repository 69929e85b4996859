"""Graceful shutdown: on SIGTERM the service first says it is not ready, keeps serving for a drain
period (load balancers and proxies that health-check stop sending it requests), and only then lets
uvicorn close its listener and finish the requests in flight (``timeout_graceful_shutdown``).

In Kubernetes the pod's preStop sleep comes before the SIGTERM (time for the endpoint removal to
reach every kube-proxy and ingress); the drain here covers balancers that poll ``/readyz``.
A second SIGTERM or a SIGINT ends the drain at once.
"""

from __future__ import annotations

import signal
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI


def draining(app: FastAPI) -> bool:
    """Whether ``app``'s process is shutting down (``/readyz`` answers 503)."""
    return getattr(app.state, "draining", False)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_seconds: float) -> None:
        super().__init__(config)
        self.app = app
        self.drain_seconds = drain_seconds
        self._drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._drain_until is None and self.drain_seconds > 0:
            self.app.state.draining = True
            self._drain_until = time.monotonic() + self.drain_seconds
            return
        self.app.state.draining = True
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_until is not None and not self.should_exit and time.monotonic() >= self._drain_until:
            super().handle_exit(signal.SIGTERM, None)
        return await super().on_tick(counter)
