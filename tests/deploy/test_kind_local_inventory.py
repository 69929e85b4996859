"""The inventory of the molecule `kind-local` scenario (the kind inventory plus the scenario's host
variables) against the test bed's API server, as a server-side dry run (site.yml --check): every
override is a setting its role accepts (argument specs), the external Kafka is probed for real (the
test bed's broker) and every object the roles would apply is admitted. This keeps the scenario
valid while it cannot run here in CI (tests/containers/test_molecule_kind.py runs it on a real kind
cluster). Only the cluster's own identity (kind node, provider id, tools) is pointed at the test bed.
"""

from __future__ import annotations

import json
import re

import pytest
from deploy_support import NAMESPACES, ROOT, run, tool_env

pytestmark = [pytest.mark.testbed, pytest.mark.timeout(1800)]

SCENARIO = ROOT / "molecule" / "kind-local"
HOST = "todo-kind-local"


def scenario_inventory(tmp_path):
    """The inventory molecule builds for the scenario: the kind group_vars and the host_vars."""
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(json.dumps({"todo_platform": {"hosts": {HOST: {}}}}))
    (inventory / "group_vars").symlink_to(ROOT / "inventories" / "kind" / "group_vars")
    (inventory / "host_vars").symlink_to(SCENARIO / "inventory" / "host_vars")
    return inventory


def test_scenario_inventory_dry_runs_against_the_api_server(kube, kafka, pg, tmp_path):
    from testbed import gobuild

    env = tool_env(kube)
    # The capacity preflight renders the enabled charts (here Dapr's) with the pinned helm.
    env["PATH"] = f"{gobuild.TOOLS['helm'].binary().parent}:{env['PATH']}"
    env.update(
        MOLECULE_EPHEMERAL_DIRECTORY=str(tmp_path),
        TODO_KIND_KAFKA_BOOTSTRAP=kafka.plaintext,
        TODO_DATABASE_URL=pg.dsn("todo_kind_local"),
        TODO_SERVICES_IMAGE="todo-services:testbed-0123456789abcdef",
    )
    # Where the scenario talks to a kind cluster, this run talks to the test bed's API server.
    point_at_test_bed = {
        "cluster_kubeconfig": str(kube.kubeconfig),
        "cluster_context": kube.context,
        "cluster_required_tools": [],
        "cluster_expected_node_provider_id": "",
    }
    (tmp_path / "test-bed.json").write_text(json.dumps(point_at_test_bed))
    inventory = scenario_inventory(tmp_path)
    common = ["-i", str(inventory), "--skip-tags", "cluster_install,images_build,images_publish",
              "-e", f"@{tmp_path / 'test-bed.json'}"]
    # A dry run cannot create the namespaces the later objects go into (test_dry_run.py does the same).
    names = kube.kubectl("get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}").stdout
    existing = set(names.split())
    for namespace in set(NAMESPACES) - existing:
        kube.kubectl("create", "namespace", namespace)
    # The CRDs for real first (as tests/deploy/test_dry_run.py does): a dry run of a custom resource
    # needs its CRD established.
    crds = run(["ansible-playbook", "playbooks/crds.yml", *common], env)
    assert crds.returncode == 0, f"crds role failed\n{crds.stdout[-4000:]}"
    result = run(["ansible-playbook", "site.yml", *common, "--check", "--diff"], env)
    tail = f"{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert result.returncode == 0, f"dry run failed\n{tail}"
    assert "failed=0" in result.stdout
    (tmp_path / "site-check.log").write_text(result.stdout)
    # The overrides took effect: the test bed's Kafka was probed as the external provider, the Dapr
    # chart archive was installed (dry run), the Deployments run the image the test bed built.
    for wanted in (r"TASK \[kafka : Probe the managed Kafka .*\n(ok|changed): ",
                   r"TASK \[dapr : Install the Dapr chart\] \*+\n(ok|changed): ",
                   r"image: todo-services:testbed-0123456789abcdef"):
        assert re.search(wanted, result.stdout), f"{wanted!r} not in {tmp_path / 'site-check.log'}"
