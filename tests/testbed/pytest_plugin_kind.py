"""pytest fixture ``kind_cluster``: a real kind cluster (kind v0.33.0, node image built here).

Session-scoped; it starts the test bed's Docker engine (``docker_engine``) if no test did, builds or
loads ``kindest/node:v1.36.3`` (:mod:`testbed.kind_node`: minutes on a cold machine, seconds warm),
creates the cluster with the product's kind configuration, waits for the node and CoreDNS to be
Ready, and deletes it at the end of the session.  It yields a :class:`testbed.kind_cluster.KindCluster`:

* ``.kubeconfig`` (a path; the server is the control-plane container's address on ``.network``),
  ``.context`` (``kind-<name>``), ``.network`` (the Docker network, ``kind``), ``.node_ip``;
* ``.kubectl(*args)``, ``.load_image(ref)`` (``kind load docker-image``), ``.node_exec(*argv)``,
  ``.diagnostics()``.

Use it from any test: ``def test_x(kind_cluster): kind_cluster.kubectl("get", "nodes")``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.core import Run


@pytest.fixture(scope="session")
def kind_cluster(docker_engine, testbed_run: Run) -> Iterator[object]:
    from testbed.kind_cluster import create_kind_cluster

    cluster = create_kind_cluster(docker_engine.host, testbed_run.data_dir / "kind")
    try:
        yield cluster
    finally:
        cluster.delete()
