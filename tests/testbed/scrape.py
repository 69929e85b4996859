"""Scrape configuration for the test bed's Prometheus with the cluster's label scheme.

In the cluster the ServiceMonitor ``todo-<service>`` (roles/monitoring/templates/servicemonitor.yml.j2)
gives every sample of a service ``job=<service>`` (jobLabel app.kubernetes.io/name),
``service=<service>`` (relabeling), and prometheus-operator adds ``namespace``, ``pod``,
``container`` and ``endpoint`` (the port name, ``http``). The PodMonitor ``dapr-sidecars`` gives
daprd samples ``job=dapr-sidecars``, ``service=<app-id>``, ``container=daprd`` and
``endpoint=dapr-metrics``. The test bed has no pods, so the same labels are set as static target
labels; dashboards and rules then read the same series in both places.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

APP_ENDPOINT = "http"
DAPR_JOB = "dapr-sidecars"
DAPR_ENDPOINT = "dapr-metrics"
TARGET_LABELS = {"job", "instance", "namespace", "service", "pod", "container", "endpoint"}


def cluster_like_jobs(
    urls: Mapping[str, str],
    daprd: Mapping[str, Any],
    *,
    namespace: str = "todo",
    interval: str = "2s",
) -> list[dict[str, Any]]:
    """Scrape jobs for the services and their sidecars.

    ``urls`` maps a service (or a replica key ``<service>#<n>``, as the test bed's platform names
    extra replicas) to its base URL; ``daprd`` maps the same keys to sidecars with ``metrics_port``.
    All replicas of a service are targets of one job, as pods are under one ServiceMonitor.
    """
    app_targets: dict[str, list[dict[str, Any]]] = {}
    sidecars: list[dict[str, Any]] = []
    for key, url in urls.items():
        service, _, replica = key.partition("#")
        pod = f"{service}-{int(replica) - 1 if replica else 0}"
        labels = {"namespace": namespace, "service": service, "pod": pod}
        app_targets.setdefault(service, []).append(
            {
                "targets": [url.removeprefix("http://").rstrip("/")],
                "labels": {**labels, "container": service, "endpoint": APP_ENDPOINT},
            }
        )
        port = getattr(daprd.get(key), "metrics_port", None)
        if port:
            sidecars.append(
                {
                    "targets": [f"127.0.0.1:{port}"],
                    "labels": {**labels, "container": "daprd", "endpoint": DAPR_ENDPOINT},
                }
            )
    jobs: list[dict[str, Any]] = [
        {
            "job_name": service,
            "scrape_interval": interval,
            "metrics_path": "/metrics",
            "static_configs": targets,
        }
        for service, targets in app_targets.items()
    ]
    if sidecars:
        jobs.append(
            {
                "job_name": DAPR_JOB,
                "scrape_interval": interval,
                "metrics_path": "/",
                "static_configs": sidecars,
            }
        )
    return jobs
