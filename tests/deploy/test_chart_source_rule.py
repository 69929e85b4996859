"""One rule for the chart source: a chart repository URL goes with a plain chart name only.

The install tasks of the kafka, dapr, monitoring and logging roles, their preflight checks and the
capacity preflight's ``helm template`` (roles/capacity/vars/main.yml) all decide it with the
``todo.platform.chart_repo_url`` / ``chart_is_name`` filters, so an ``oci://`` reference or a
``.tgz`` archive works with the default repository URLs left in place (helm refuses a ``--repo``
beside them: "... is not a valid chart repository"). The filters themselves are unit-tested in
the collection (tests/unit/plugins/filter/test_chart_source.py); here the roles' own expressions
are evaluated by Ansible.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from deploy_support import ROOT

#: role -> the chart setting prefixes of its helm tasks
PREFIXES = {
    "kafka": ["kafka_strimzi"],
    "dapr": ["dapr"],
    "monitoring": ["monitoring"],
    "logging": ["logging_loki", "logging_alloy"],
}
CASES = [prefix for prefixes in PREFIXES.values() for prefix in prefixes]
# A repository URL for the roles whose default is empty (their default source is oci://).
EXAMPLE_URL = "https://charts.example.internal"


def _defaults(role: str) -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())


def _role_of(prefix: str) -> str:
    return next(role for role, prefixes in PREFIXES.items() if prefix in prefixes)


def _install_expressions() -> dict[str, str]:
    """prefix -> the chart_repo_url expression of the role's helm task."""
    found = {}
    for role in PREFIXES:
        for file in sorted((ROOT / "roles" / role / "tasks").glob("*.yml")):
            for task in yaml.safe_load(file.read_text()) or []:
                helm = task.get("kubernetes.core.helm")
                if helm:
                    prefix = helm["chart_ref"].strip("{} ").removesuffix("_chart_ref")
                    found[prefix] = helm.get("chart_repo_url", "")
    return found


def _capacity_expressions() -> dict[str, str]:
    """prefix -> the repo_url expression the capacity preflight renders that chart with."""
    releases = yaml.safe_load((ROOT / "roles" / "capacity" / "vars" / "main.yml").read_text())[
        "_capacity_releases"
    ]
    return {
        r["chart_ref"].strip("{} ").split(" ")[0].removesuffix("_chart_ref"): r["repo_url"] for r in releases
    }


def test_every_chart_source_decision_uses_the_shared_filters():
    install, capacity = _install_expressions(), _capacity_expressions()
    assert sorted(install) == sorted(CASES) and sorted(capacity) == sorted(CASES), (install, capacity)
    for prefix in CASES:
        assert f"| todo.platform.chart_repo_url({prefix}_chart_repo_url)" in install[prefix], install[prefix]
        assert f"| todo.platform.chart_repo_url({prefix}_chart_repo_url" in capacity[prefix], capacity[prefix]
        preflight = (ROOT / "roles" / _role_of(prefix) / "tasks" / "preflight.yml").read_text()
        assert f"not ({prefix}_chart_ref | todo.platform.chart_is_name)" in preflight, prefix


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> dict:
    """The install and capacity expressions, evaluated by Ansible with an oci:// reference, a .tgz
    archive and a plain chart name, the repository URL left at the role's default."""
    work = tmp_path_factory.mktemp("chart-source")
    install, capacity = _install_expressions(), _capacity_expressions()
    tasks = []
    for prefix in CASES:
        url = _defaults(_role_of(prefix))[f"{prefix}_chart_repo_url"] or EXAMPLE_URL
        refs = {
            "oci": f"oci://registry.example.internal/charts/{prefix}",
            "tgz": f"/srv/charts/{prefix}-1.0.0.tgz",
            "name": prefix.split("_")[-1],
        }
        for label, ref in refs.items():
            # The install task ends in `or omit`; the value before it is what decides.
            exprs = {"install": install[prefix].replace(" or omit }}", " }}"), "capacity": capacity[prefix]}
            for where, expr in exprs.items():
                key = f"{prefix} {label} {where}"
                tasks.append(
                    {
                        "name": key,
                        "ansible.builtin.set_fact": {
                            "_results": "{{ _results | combine({" + repr(key) + ": _value}) }}"
                        },
                        "vars": {f"{prefix}_chart_ref": ref, f"{prefix}_chart_repo_url": url, "_value": expr},
                    }
                )
    tasks.append(
        {
            "name": "Write the results",
            "ansible.builtin.copy": {
                "dest": str(work / "results.json"),
                "content": "{{ _results | to_json }}",
                "mode": "0600",
            },
        }
    )
    playbook = work / "play.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Evaluate the chart source expressions",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "vars": {"_results": {}},
                    "tasks": tasks,
                }
            ]
        )
    )
    env = {
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"),
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "ANSIBLE_NOCOLOR": "1",
    }
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), str(playbook)],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return json.loads((work / "results.json").read_text())


@pytest.mark.parametrize("prefix", CASES)
def test_the_default_repository_url_is_left_out_for_oci_and_archives(evaluated, prefix):
    url = _defaults(_role_of(prefix))[f"{prefix}_chart_repo_url"] or EXAMPLE_URL
    for where in ("install", "capacity"):
        got = {
            label: evaluated.get(f"{prefix} {label} {where}", "<omitted>") for label in ("oci", "tgz", "name")
        }
        assert got == {"oci": "", "tgz": "", "name": url}, f"{where}: {got}"
