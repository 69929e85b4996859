"""One pin per deploy-path tool: what scripts/tools builds into the tool cache is what the cluster
preflight of every inventory accepts (roles/cluster/files/tool-versions.yml is read by both)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.module_utils.compat.version import LooseVersion
from testbed import gobuild

ROOT = Path(__file__).resolve().parents[2]
PINS_FILE = ROOT / "roles/cluster/files/tool-versions.yml"
PINS = yaml.safe_load(PINS_FILE.read_text())
INVENTORIES = sorted(p.name for p in (ROOT / "inventories").iterdir() if p.is_dir())


def _required_tools(inventory: str) -> list[dict]:
    path = ROOT / "inventories" / inventory / "group_vars/todo_platform/cluster.yml"
    data = yaml.safe_load(path.read_text())
    return data.get("cluster_required_tools", [])


def _v(text: str) -> LooseVersion:
    return LooseVersion(str(text).lstrip("v"))


def test_the_tool_cache_builds_the_pinned_versions():
    assert gobuild.DEPLOY_TOOL_PINS == PINS_FILE
    for name, pin in PINS.items():
        assert name in gobuild.TOOLS, f"{name} is pinned in {PINS_FILE.name}, scripts/tools cannot build it"
        assert gobuild.TOOLS[name].version == pin["version"]


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_each_inventory_accepts_what_the_tool_cache_builds(inventory):
    checked = []
    for tool in _required_tools(inventory):
        name = tool["name"]
        if name not in gobuild.TOOLS:
            continue  # the user's tool (docker, minikube): its minimum is the inventory's own
        pin = PINS.get(name, {})
        assert "min_version" not in tool and "below_version" not in tool, (
            f"inventories/{inventory} repeats the version of {name}; its pin in {PINS_FILE.name} is the one"
        )
        built = gobuild.TOOLS[name].version
        minimum = pin.get("version")
        assert minimum, f"{name} is built by scripts/tools but has no pin in {PINS_FILE.name}"
        assert _v(built) >= _v(minimum), (
            f"{inventory}: the tool cache builds {name} {built}, the preflight wants >= {minimum}"
        )
        if "below_version" in pin:
            assert _v(built) < _v(pin["below_version"]), f"{name} {built} is not below {pin['below_version']}"
        checked.append(name)
    if inventory in ("kind", "minikube", "oke", "aks", "gke"):
        assert "helm" in checked, f"inventories/{inventory} does not check helm"
    if inventory == "kind":
        assert "kind" in checked
