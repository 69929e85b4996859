# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which pods do not serve, which Deployments lack available replicas and which Jobs failed
(status runbook).

Comparing a pod's Ready condition with a dict in Jinja never matches a real pod (its condition
also carries lastTransitionTime, reason, ...), so the judgement lives here, shared with
deployment_rollout (module_utils/rollout.py).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.todo.platform.plugins.module_utils.rollout import (
    deployments_not_available as _deployments_not_available,
)
from ansible_collections.todo.platform.plugins.module_utils.rollout import jobs_failed as _jobs_failed
from ansible_collections.todo.platform.plugins.module_utils.rollout import pods_not_ready as _pods_not_ready


def _objects(value, what):
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise AnsibleFilterError(f"{what}: expected a list of {what} objects (k8s_info's resources)")
    return value


def pods_not_ready(pods):
    return _pods_not_ready(_objects(pods, "Pod"))


def deployments_not_available(deployments):
    return _deployments_not_available(_objects(deployments, "Deployment"))


def jobs_failed(jobs):
    return _jobs_failed(_objects(jobs, "Job"))


class FilterModule:
    def filters(self):
        return {
            "pods_not_ready": pods_not_ready,
            "deployments_not_available": deployments_not_available,
            "jobs_failed": jobs_failed,
        }
