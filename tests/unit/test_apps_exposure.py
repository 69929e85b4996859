"""What roles/apps/templates/exposure.yml.j2 sends to the API server for each inventory (rendered
by ansible-playbook with the role's defaults under the inventory's group_vars, no cluster).

GKE's Gateway load balancer health-checks GET / unless a HealthCheckPolicy says otherwise, and no
service answers /: on gke every backend Service of a route gets a policy for /readyz; elsewhere
(no GKE gateway class) there is none, since the CRD only exists on GKE."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENVS = ["kind", "minikube", "oke", "aks", "gke"]
PLAY = """
- name: Render the exposure objects of the apps role ({case})
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [{vars_file}]
  tasks:
    - name: Write the objects
      ansible.builtin.copy:
        content: >-
          {{{{ lookup('ansible.builtin.template', '{template}')
               | ansible.builtin.from_yaml_all | select | list | to_json }}}}
        dest: {out}
        mode: "0600"
"""


def env_vars(env: str, overrides: dict | None = None) -> dict:
    """The role's defaults, the inventory's group_vars over them, then the role's vars (Ansible's order)."""
    merged = yaml.safe_load((ROOT / "roles/apps/defaults/main.yml").read_text())
    for path in sorted((ROOT / f"inventories/{env}/group_vars/todo_platform").glob("*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    merged.update(overrides or {})
    merged.update(yaml.safe_load((ROOT / "roles/apps/vars/main.yml").read_text()))
    return merged


def render(tmp_path: Path, cases: dict[str, tuple[str, dict]]) -> dict[str, list[dict]]:
    """One ansible-playbook run, one play per case: {case: (inventory, overrides)} -> objects."""
    plays = []
    for case, (env, overrides) in cases.items():
        vars_file = tmp_path / f"{case}.vars.json"
        vars_file.write_text(json.dumps(env_vars(env, overrides)))
        out = tmp_path / f"{case}.objects.json"
        template = ROOT / "roles/apps/templates/exposure.yml.j2"
        plays.append(PLAY.format(case=case, vars_file=vars_file, template=template, out=out))
    playbook = tmp_path / "render.yml"
    playbook.write_text("".join(plays))
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), str(playbook)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return {case: json.loads((tmp_path / f"{case}.objects.json").read_text()) for case in cases}


def policies(objects: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "HealthCheckPolicy"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    cases = {env: (env, {}) for env in ENVS}
    cases["gke-other-class"] = ("gke", {"apps_gateway_class": "istio"})
    cases["gke-switched-off"] = ("gke", {"apps_gateway_health_check_policy": False})
    return render(tmp_path_factory.mktemp("exposure"), cases)


def test_gke_gateway_health_checks_every_backend_on_readyz(rendered) -> None:
    objects = rendered["gke"]
    route = next(o for o in objects if o["kind"] == "HTTPRoute")
    backends = {ref["name"] for rule in route["spec"]["rules"] for ref in rule["backendRefs"]}
    assert backends == {"backend", "audit", "sync"}
    found = policies(objects)
    assert set(found) == backends
    for name, policy in found.items():
        assert policy["apiVersion"] == "networking.gke.io/v1"
        assert policy["metadata"]["namespace"] == route["metadata"]["namespace"]
        assert policy["spec"]["targetRef"] == {"group": "", "kind": "Service", "name": name}
        config = policy["spec"]["default"]["config"]
        assert config["type"] == "HTTP"
        check = config["httpHealthCheck"]
        assert check == {"portSpecification": "USE_SERVING_PORT", "requestPath": "/readyz"}


def test_the_checked_path_is_one_every_service_answers() -> None:
    health = (ROOT / "services/src/todo/common/health.py").read_text()
    assert '"/readyz"' in health


@pytest.mark.parametrize("env", [e for e in ENVS if e != "gke"])
def test_no_health_check_policy_outside_gke(rendered, env) -> None:
    assert policies(rendered[env]) == {}


def test_gateway_of_another_class_gets_no_policy_and_the_switch_turns_it_off(rendered) -> None:
    other = rendered["gke-other-class"]
    assert any(o["kind"] == "HTTPRoute" for o in other)
    assert policies(other) == {}
    assert policies(rendered["gke-switched-off"]) == {}
