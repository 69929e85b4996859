"""The kafka role builds the OCI Streaming user name for the Kafka modules (topics, probe, lag) from
the same kafka_oci_streaming dict the dapr role hands to todo.platform.dapr_kafka_pubsub, and the OKE
inventory builds it for the kafka exporter: all three must give the same name, with and without an
identity domain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.todo.platform.plugins.module_utils.dapr_pubsub import build_resources

ROOT = Path(__file__).resolve().parents[2]
POOL = "ocid1.streampool.oc1.eu-frankfurt-1.amaaaaexample"
BOOTSTRAP = ["cell-1.streaming.eu-frankfurt-1.oci.oraclecloud.com:9092"]
PLAYBOOK = """
- name: Render the kafka role's connection settings
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Load the role's internal variables
      ansible.builtin.include_vars:
        file: {vars_file}
    - name: Load the OKE inventory's monitoring settings (the kafka exporter's user name)
      ansible.builtin.include_vars:
        file: {monitoring_file}
    - name: Write the OCI Streaming user names
      ansible.builtin.copy:
        content: >-
          {{{{ [_kafka_connection.sasl_username,
                monitoring_kafka_username | trim] | to_json }}}}
        dest: {out}
        mode: "0600"
"""


def role_usernames(tmp_path: Path, section: dict) -> list[str]:
    out = tmp_path / "username.json"
    playbook = tmp_path / "render.yml"
    playbook.write_text(
        PLAYBOOK.format(
            vars_file=ROOT / "roles/kafka/vars/main.yml",
            monitoring_file=ROOT / "inventories/oke/group_vars/todo_platform/monitoring.yml",
            out=out,
        )
    )
    extra = tmp_path / "extra.json"
    section = dict(section, bootstrap_servers=BOOTSTRAP, auth_token="token")
    settings = {"kafka_oci_streaming": section, "kafka_provider": "oci_streaming"}
    settings.update({f"kafka_{other}": {} for other in ("azure_event_hubs", "confluent_cloud", "external")})
    extra.write_text(json.dumps(settings))
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), str(playbook), "-e", f"@{extra}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(out.read_text())


def component_username(section: dict) -> str:
    section = dict(
        section,
        bootstrap_servers=BOOTSTRAP,
        auth_token="token",
    )
    r = build_resources(
        dict(name="pubsub", namespace="todo", provider="oci_streaming", oci_streaming=section)
    )
    return next(m["value"] for m in r["component"]["spec"]["metadata"] if m["name"] == "saslUsername")


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("Default", f"mytenancy/Default/todo-streaming/{POOL}"),
        (None, f"mytenancy/todo-streaming/{POOL}"),
        ("absent", f"mytenancy/todo-streaming/{POOL}"),
    ],
    ids=["with domain", "domain null", "domain left out"],
)
def test_role_exporter_and_component_build_the_same_user_name(tmp_path, domain, expected):
    section = {"tenancy": "mytenancy", "user": "todo-streaming", "stream_pool_id": POOL}
    if domain != "absent":
        section["domain"] = domain
    assert role_usernames(tmp_path, section) == [expected, expected]
    assert component_username(section) == expected
