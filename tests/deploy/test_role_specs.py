"""Every role of this project: meta/argument_specs.yml documents exactly the keys of
defaults/main.yml, and every public variable carries the role's prefix."""

from __future__ import annotations

import pytest
import yaml
from deploy_support import ROOT

ROLES = ["cluster", "crds", "images", "kafka", "dapr", "apps", "capacity"]


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_match_defaults(role):
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert sorted(options) == sorted(defaults)
    assert all(name.startswith(f"{role}_") for name in defaults)


@pytest.mark.parametrize("role", ROLES)
def test_internal_variables_are_prefixed(role):
    internal = yaml.safe_load((ROOT / "roles" / role / "vars" / "main.yml").read_text()) or {}
    assert all(name.startswith(f"_{role}_") for name in internal)
