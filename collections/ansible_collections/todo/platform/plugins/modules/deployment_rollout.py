#!/usr/bin/python
# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: deployment_rollout
short_description: Roll Deployments out again and wait until only their new pods serve
version_added: 0.1.0
author:
  - Todo Platform developers (@todo-platform)
description:
  - Sets pod template annotations of each Deployment (O(template_annotations), for example a checksum
    of the Secrets the pods read, so that a rollout happens only when they changed) and, with
    O(restart=true), the C(kubectl.kubernetes.io/restartedAt) annotation C(kubectl rollout restart)
    sets, which always starts a rollout.
  - Then waits until each rollout is over, that is until the controller saw the new spec, every pod of
    the ReplicaSet of the current revision is Ready, as many as the Deployment wants, and no pod of an
    older ReplicaSet exists any more, not even a terminating one. The Deployment's C(Available)
    condition alone is already true before the rollout starts, and C(availableReplicas) counts old
    pods too.
  - Fails, saying what it still waited for, when O(wait_timeout) passes or the Deployment reports
    C(ProgressDeadlineExceeded).
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
attributes:
  check_mode:
    support: full
    description: Reports which Deployments would roll out; changes and waits for nothing.
  diff_mode:
    support: none
    description: Only annotations change; RV(deployments) says which.
options:
  namespace:
    description: Namespace of the Deployments.
    type: str
    required: true
  names:
    description: Names of the Deployments.
    type: list
    elements: str
    required: true
  restart:
    description: Start a rollout even when no annotation of O(template_annotations) changes.
    type: bool
    default: false
  template_annotations:
    description: Pod template annotations to set; a Deployment whose values already match is not rolled out.
    type: dict
    default: {}
  wait:
    description: Wait until the rollouts are over (also for Deployments that did not change).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for all rollouts together.
    type: int
    default: 600
requirements:
  - kubernetes >= 24.2.0
seealso:
  - module: kubernetes.core.k8s
"""

EXAMPLES = r"""
- name: Restart the backend and wait until only new pods serve
  todo.platform.deployment_rollout:
    namespace: todo
    names: [backend]
    restart: true

- name: Roll out the services whose Secrets changed
  todo.platform.deployment_rollout:
    namespace: todo
    names: [backend, audit]
    template_annotations:
      todo.platform/secrets-checksum: "{{ checksum }}"
"""

RETURN = r"""
deployments:
  description:
    - Per Deployment C(name), C(rolled_out) (a rollout was started), C(replicaset) (of the current
      revision, after the wait), C(pods) (its Ready pods) and C(state) (what the wait found).
  returned: always
  type: list
  elements: dict
"""

import time
from datetime import datetime, timezone

from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.todo.platform.plugins.module_utils.k8s_apply import run_k8s_module
from ansible_collections.todo.platform.plugins.module_utils.rollout import (
    HASH_LABEL,
    RolloutFailed,
    is_ready,
    newest_replicaset,
    rollout_state,
)

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def _selector(deployment):
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _items(resource, namespace, selector):
    return [i.to_dict() for i in resource.get(namespace=namespace, label_selector=selector).items]


def _roll(module, deployments, name):
    """Patch the template annotations that differ (and restartedAt); returns the result row."""
    p, ns = module.params, module.params["namespace"]
    try:
        current = deployments.get(name=name, namespace=ns).to_dict()
    except Exception as e:
        if getattr(e, "status", None) == 404:
            module.fail_json(msg=f"Deployment {ns}/{name} does not exist; check names and namespace")
        raise
    have = ((current["spec"]["template"].get("metadata") or {}).get("annotations")) or {}
    wanted = {k: str(v) for k, v in p["template_annotations"].items() if have.get(k) != str(v)}
    if p["restart"]:
        now = datetime.now(timezone.utc)  # noqa: UP017 - modules also run on Python < 3.11
        wanted[RESTARTED_AT] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    if wanted and not module.check_mode:
        deployments.patch(
            body={"spec": {"template": {"metadata": {"annotations": wanted}}}},
            name=name,
            namespace=ns,
            content_type="application/merge-patch+json",
        )
    return {"name": name, "rolled_out": bool(wanted)}


def _check(module, client, result):
    """One look at a rollout: (over, state); once over, ``result`` names its ReplicaSet and pods."""
    ns = module.params["namespace"]
    dep = client.resource("Deployment", "apps/v1").get(name=result["name"], namespace=ns).to_dict()
    selector = _selector(dep)
    rs_list = _items(client.resource("ReplicaSet", "apps/v1"), ns, selector)
    pod_list = _items(client.resource("Pod", "v1"), ns, selector)
    done, state = rollout_state(dep, rs_list, pod_list)
    if done:
        rs = newest_replicaset(dep, rs_list)
        new_hash = rs["metadata"]["labels"].get(HASH_LABEL)
        result.update(
            replicaset=rs["metadata"]["name"],
            pods=sorted(
                q["metadata"]["name"]
                for q in pod_list
                if is_ready(q) and q["metadata"]["labels"].get(HASH_LABEL) == new_hash
            ),
            state=state,
        )
    return done, state


def _wait(module, client, results):
    timeout = module.params["wait_timeout"]
    deadline = time.monotonic() + timeout
    pending, awaited = list(results), {}
    while pending:
        still = []
        for result in pending:
            try:
                done, awaited[result["name"]] = _check(module, client, result)
            except RolloutFailed as e:
                module.fail_json(msg=f"rollout failed: {e}", deployments=results)
            if not done:
                still.append(result)
        pending = still
        if pending and time.monotonic() > deadline:
            states = "; ".join(awaited[name] for name in sorted(r["name"] for r in pending))
            module.fail_json(msg=f"rollout not over after {timeout} s: {states}", deployments=results)
        if pending:
            time.sleep(2)


def run(module, client):
    deployments = client.resource("Deployment", "apps/v1")
    results = [_roll(module, deployments, name) for name in module.params["names"]]
    if module.params["wait"] and not module.check_mode:
        _wait(module, client, results)
    module.exit_json(changed=any(r["rolled_out"] for r in results), deployments=results)


def main():
    argument_spec = dict(AUTH_ARG_SPEC)
    argument_spec.update(
        namespace=dict(type="str", required=True),
        names=dict(type="list", elements="str", required=True),
        restart=dict(type="bool", default=False),
        template_annotations=dict(type="dict", default={}),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=600),
    )
    module = AnsibleK8SModule(argument_spec=argument_spec, supports_check_mode=True, check_k8s=False)
    run_k8s_module(module, "deployment_rollout", run)


if __name__ == "__main__":
    main()
