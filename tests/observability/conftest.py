"""Fixtures of the observability tests: the test bed's Prometheus scraping the five services
and their sidecars with the cluster's label scheme, after a scripted workload."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from common import rule_files
from testbed.scrape import cluster_like_jobs
from workload import Planted, run_workload


@dataclass
class Observed:
    platform: Any
    prometheus: Any
    planted: Planted


@pytest.fixture(scope="session")
def observed(todo_platform: Any, prometheus: Any, kafka: Any) -> Iterator[Observed]:
    jobs = cluster_like_jobs(todo_platform.urls, todo_platform.daprd, namespace="todo", interval="2s")
    prometheus.set_scrape_config(jobs, rule_files=[str(p) for p in rule_files()])
    for job in ("backend", "audit", "recurring-task", "notification", "sync", "dapr-sidecars"):
        prometheus.wait_for(f'up{{job="{job}"}} == 1', timeout=60)
    planted = run_workload(todo_platform, prometheus, kafka)
    yield Observed(todo_platform, prometheus, planted)
