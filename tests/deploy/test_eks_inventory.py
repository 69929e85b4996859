"""A new cloud is an inventory, not a role change (issue 19, item 6).

tests/deploy/inventories/eks is an EKS-shaped inventory that exists only here. The roles never
heard of EKS: every size, storage class and object store comes from the inventory. It is deployed
on the test bed like the shipped inventories (test_dry_run.py: site.yml as a server-side dry run;
test_chart_render.py: each chart rendered with its values and accepted by the API server); this
module checks that no role names it and that its values are the ones the charts get."""

from __future__ import annotations

import re

from deploy_support import ROOT, inventory_dir
from test_chart_render import release, render_role_values

PRODUCT = [ROOT / "roles", ROOT / "collections" / "ansible_collections" / "todo" / "platform" / "plugins"]


def test_the_eks_inventory_is_a_test_fixture_only():
    assert inventory_dir("eks") == ROOT / "tests" / "deploy" / "inventories" / "eks"
    assert not (ROOT / "inventories" / "eks").exists()


def test_no_role_knows_eks():
    mentions = [
        f"{path.relative_to(ROOT)}:{number}"
        for root in PRODUCT
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in {".yml", ".yaml", ".j2", ".py", ".json"}
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if re.search(r"\beks\b", line, re.IGNORECASE)
    ]
    assert mentions == [], f"the roles must not need to know EKS: {mentions}"


def test_the_charts_get_the_eks_inventorys_sizes_and_store(tmp_path):
    values = render_role_values(tmp_path, ["eks"])
    prometheus = release(values, "eks", "kube-prometheus-stack")["values"]
    spec = prometheus["prometheus"]["prometheusSpec"]
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "gp3"
    assert claim["resources"]["requests"]["storage"] == "50Gi"
    assert spec["retentionSize"] == "45GiB"
    assert spec["resources"]["requests"] == {"cpu": "500m", "memory": "2Gi"}
    assert prometheus["alertmanager"]["alertmanagerSpec"]["replicas"] == 2
    grafana = prometheus["grafana"]["persistence"]
    assert grafana == {"enabled": True, "storageClassName": "gp3", "size": "10Gi"}

    loki = release(values, "eks", "loki")["values"]
    assert loki["loki"]["storage"]["type"] == "s3"
    assert loki["loki"]["storage"]["s3"]["endpoint"] == "https://s3.eu-west-1.amazonaws.com"
    assert loki["loki"]["limits_config"]["retention_period"] == "720h"
    assert loki["singleBinary"]["replicas"] == 3
    assert loki["singleBinary"]["persistence"]["storageClass"] == "gp3"
    # The credentials stay out of the values (environment variables from the Secret).
    assert "test-aws-s3" not in str(loki)
