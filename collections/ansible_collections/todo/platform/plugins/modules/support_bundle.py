#!/usr/bin/python
# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: support_bundle
short_description: Collect the state of the platform's namespaces into one archive, secrets redacted
version_added: 0.1.0
author:
  - Todo Platform developers (@todo-platform)
description:
  - Writes a gzipped tar archive with, per namespace, the pods (status, conditions, restarts, images),
    Deployments, StatefulSets, ReplicaSets, DaemonSets, Jobs, Services, PersistentVolumeClaims,
    ConfigMaps, Dapr Components and the events, the recent logs of every container of every pod
    (application, init and sidecar containers; the previous run too after a restart), the names and
    keys of the Secrets (never their values), the cluster's version and nodes, and the sections
    given in O(extra) (consumer lag, outbox backlog, DLQ counts, versions).
  - Everything is redacted before it is written. The values of every Secret of the namespaces (and
    O(secret_values)), also base64- and URL-encoded, are replaced wherever they appear; string
    fields named like credentials (password, token, secret, access key, connection string) and env
    or metadata entries with such names lose their values; bearer tokens, JWTs, credentials in URLs
    and C(key=value) secrets of connection strings are replaced by their shape. Before the archive
    is written every file is checked again for the known values; the module fails rather than
    write a bundle that still holds one.
  - What cannot be collected (a container without logs, a resource the API does not serve) is
    written into the bundle as the error the API returned, so the bundle says what is missing.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
attributes:
  check_mode:
    support: full
    description: Collects and redacts, but writes no archive.
  diff_mode:
    support: none
    description: Writes a new archive; there is nothing to compare.
options:
  dest:
    description: Path of the archive to write (C(.tar.gz)); its directory must exist.
    type: path
    required: true
  namespaces:
    description: Namespaces to collect.
    type: list
    elements: str
    default: [todo, kafka, dapr-system, monitoring, logging]
  log_lines:
    description: At most this many of the newest log lines per container.
    type: int
    default: 500
  log_since_seconds:
    description: Only log lines of the last this many seconds.
    type: int
    default: 3600
  extra:
    description: More sections for the bundle, each written as C(<name>.json) (redacted like the rest).
    type: dict
    default: {}
  secret_values:
    description:
      - Further values to redact wherever they appear (for example credentials kept outside the cluster).
    type: list
    elements: str
    default: []
requirements:
  - kubernetes >= 24.2.0
"""

EXAMPLES = r"""
- name: Write the diagnostics bundle
  todo.platform.support_bundle:
    dest: /tmp/todo-diagnostics.tar.gz
    extra:
      versions: {collection: 0.1.0}
"""

RETURN = r"""
dest:
  description: The archive written.
  returned: always
  type: str
files:
  description: The files in the archive.
  returned: always
  type: list
  elements: str
redactions:
  description: How many secrets were replaced.
  returned: always
  type: int
missing:
  description: What could not be collected (file and the API's answer).
  returned: always
  type: list
  elements: str
"""

import base64
import io
import json
import os
import tarfile
import time

from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.service import hide_fields
from ansible_collections.todo.platform.plugins.module_utils.k8s_apply import (
    APPLIER_FIELDS,
    api_error,
    run_k8s_module,
)
from ansible_collections.todo.platform.plugins.module_utils.redact import Redactor

RESOURCES = [
    ("pods", "v1", "Pod"),
    ("deployments", "apps/v1", "Deployment"),
    ("statefulsets", "apps/v1", "StatefulSet"),
    ("replicasets", "apps/v1", "ReplicaSet"),
    ("daemonsets", "apps/v1", "DaemonSet"),
    ("jobs", "batch/v1", "Job"),
    ("services", "v1", "Service"),
    ("pvcs", "v1", "PersistentVolumeClaim"),
    ("configmaps", "v1", "ConfigMap"),
    ("events", "v1", "Event"),
    ("dapr-components", "dapr.io/v1alpha1", "Component"),
]


def _plain(item):
    obj = item.to_dict() if hasattr(item, "to_dict") else item
    return hide_fields(obj, APPLIER_FIELDS)


def _decoded(value):
    try:
        return base64.b64decode(value).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def collect(module, client):
    p = module.params
    files = {}
    missing = []
    known = list(p["secret_values"])

    def get(api_version, kind, namespace=None):
        resource = client.resource(kind, api_version)
        return [_plain(i) for i in resource.get(namespace=namespace).items]

    try:
        from kubernetes.client import VersionApi

        files["cluster/version.json"] = VersionApi(client.client.client).get_code().to_dict()
    except Exception as e:
        missing.append(f"cluster/version.json: {api_error(e)}")
    try:
        files["cluster/nodes.json"] = [
            {
                "name": n["metadata"]["name"],
                "labels": n["metadata"].get("labels"),
                "nodeInfo": (n.get("status") or {}).get("nodeInfo"),
                "conditions": (n.get("status") or {}).get("conditions"),
                "allocatable": (n.get("status") or {}).get("allocatable"),
            }
            for n in get("v1", "Node")
        ]
    except Exception as e:
        missing.append(f"cluster/nodes.json: {api_error(e)}")

    core = None
    for ns in p["namespaces"]:
        try:
            secrets = get("v1", "Secret", ns)
        except Exception as e:
            # without the values nothing can be redacted by value: refuse rather than leak
            module.fail_json(msg=f"cannot read the Secrets of namespace {ns} to redact them: {api_error(e)}")
        files[f"{ns}/secrets.json"] = [
            {"name": s["metadata"]["name"], "type": s.get("type"), "keys": sorted(s.get("data") or {})}
            for s in secrets
        ]
        known.extend(_secret_values(secrets))
        for name, api_version, kind in RESOURCES:
            try:
                files[f"{ns}/{name}.json"] = get(api_version, kind, ns)
            except Exception as e:
                missing.append(f"{ns}/{name}.json: {api_error(e)}")
        if core is None:
            from kubernetes.client import CoreV1Api

            core = CoreV1Api(client.client.client)
        for pod in files.get(f"{ns}/pods.json", []):
            _pod_logs(core, p, ns, pod, files, missing)
    for name, value in p["extra"].items():
        files[f"{name}.json"] = value
    return files, missing, known


def _secret_values(secrets):
    """Every decoded Secret value, and the strings inside a JSON value (dockerconfigjson)."""
    known = []
    for s in secrets:
        for value in (s.get("data") or {}).values():
            text = _decoded(value) if value else None
            if not text:
                continue
            known.append(text)
            try:
                stack = [json.loads(text)]
            except ValueError:
                stack = []
            while stack:
                node = stack.pop()
                if isinstance(node, dict):
                    stack.extend(node.values())
                elif isinstance(node, list):
                    stack.extend(node)
                elif isinstance(node, str):
                    known.append(node)
    return known


def _pod_logs(core, p, ns, pod, files, missing):
    """The logs of each container of ``pod``, and of its previous run after a restart."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    restarts = {c["name"]: c.get("restartCount", 0) for c in status.get("containerStatuses") or []}
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for previous in [False] + ([True] if restarts.get(container["name"]) else []):
            path = "{}/logs/{}/{}{}.log".format(
                ns, pod["metadata"]["name"], container["name"], ".previous" if previous else ""
            )
            try:
                files[path] = core.read_namespaced_pod_log(
                    pod["metadata"]["name"],
                    ns,
                    container=container["name"],
                    tail_lines=p["log_lines"],
                    since_seconds=p["log_since_seconds"],
                    previous=previous,
                    _request_timeout=30,
                )
            except Exception as e:
                missing.append(f"{path}: {api_error(e)}")


def run(module, client):
    p = module.params
    files, missing, known = collect(module, client)
    redactor = Redactor(known)
    rendered = {}
    for path, content in files.items():
        if isinstance(content, str):
            rendered[path] = redactor.text(content)
        else:
            rendered[path] = json.dumps(redactor.data(content), indent=1, sort_keys=True, default=str)
    rendered["missing.json"] = json.dumps([redactor.text(m) for m in missing], indent=1)
    for path, text in rendered.items():
        if redactor.leaks(text):
            module.fail_json(msg=f"a secret value survived redaction in {path}; no bundle written")
    if not module.check_mode:
        directory = os.path.dirname(os.path.abspath(p["dest"]))
        if not os.path.isdir(directory):
            module.fail_json(msg=f"dest: directory {directory} does not exist")
        stamp = time.time()
        tmp = p["dest"] + ".part"
        with tarfile.open(tmp, "w:gz") as tar:
            for path in sorted(rendered):
                data = rendered[path].encode()
                info = tarfile.TarInfo("todo-diagnostics/" + path)
                info.size, info.mtime, info.mode = len(data), stamp, 0o600
                tar.addfile(info, io.BytesIO(data))
        os.chmod(tmp, 0o600)
        os.replace(tmp, p["dest"])
    module.exit_json(
        changed=not module.check_mode,
        dest=p["dest"],
        files=sorted(rendered),
        redactions=redactor.count,
        missing=json.loads(rendered["missing.json"]),
    )


def main():
    argument_spec = dict(AUTH_ARG_SPEC)
    argument_spec.update(
        dest=dict(type="path", required=True),
        namespaces=dict(
            type="list", elements="str", default=["todo", "kafka", "dapr-system", "monitoring", "logging"]
        ),
        log_lines=dict(type="int", default=500),
        log_since_seconds=dict(type="int", default=3600),
        extra=dict(type="dict", default={}),
        secret_values=dict(type="list", elements="str", default=[], no_log=True),
    )
    module = AnsibleK8SModule(argument_spec=argument_spec, supports_check_mode=True, check_k8s=False)
    run_k8s_module(module, "support_bundle", run)


if __name__ == "__main__":
    main()
