"""pytest fixtures for daprd sidecars and the kwok Kubernetes API (session-scoped).

* ``daprd_factory`` - ``daprd_factory(app_id, app_port, resources_dir, **opts)`` starts a real daprd
  (self-hosted mode, free loopback ports) and returns a :class:`testbed.daprd.Daprd` with
  ``.http_port .grpc_port .metrics_port .stop() .start() .log_file``; every sidecar is stopped at
  the end of the session.  Options: see ``Daprd.__init__`` (``env``, ``api_token``,
  ``app_api_token``, ``app_protocol``, ``config``, ``max_request_size_mb``, ``log_level`` …).
* ``kube`` - a :class:`testbed.kube.Kube`: ``.kubeconfig .context .kubectl(*args)
  .install_crds(paths)``.  Reuses the cluster of a running ``scripts/testbed up``.

The first use on a machine builds the Go binaries into the tool cache (minutes; ``scripts/testbed
tools`` does it ahead of time).  A missing prerequisite raises ``MissingTool``: the test errors.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.core import Run, acquire


@pytest.fixture(scope="session")
def daprd_factory(testbed_run: Run) -> Iterator[object]:
    """Start daprd sidecars: ``daprd_factory(app_id, app_port, resources_dir, **opts)``."""
    from testbed.daprd import DaprdFactory, daprd_binary

    daprd_binary()  # build (or find) it once, before any test starts its apps
    factory = DaprdFactory(testbed_run)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="session")
def kube(testbed_run: Run) -> Iterator[object]:
    """The kwok Kubernetes API: ``.kubeconfig .context .kubectl(*args) .install_crds(paths)``."""
    from testbed.kube import Kube

    comp, owned = acquire("kube", Kube, testbed_run)
    try:
        yield comp
    finally:
        if owned:
            comp.destroy()
