# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""When a Deployment's rollout is over, judged from the objects themselves (pure logic of
deployment_rollout and of the status runbook's filters).

A Deployment can report Available, and even replicas == availableReplicas, while old pods still
serve (mid-rollout with maxSurge, or old pods terminating), so the rollout is over only when the
newest ReplicaSet's pods are all Ready and no other pod of the Deployment exists any more.
"""

from __future__ import annotations

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"


def _get(obj, *path, default=None):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj


def is_ready(pod):
    """A pod serves: not being deleted, not finished, and its Ready condition is True."""
    if _get(pod, "metadata", "deletionTimestamp"):
        return False
    conditions = _get(pod, "status", "conditions", default=[]) or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _owned_by_job(pod):
    owners = _get(pod, "metadata", "ownerReferences", default=[]) or []
    return any(o.get("kind") == "Job" for o in owners)


def pods_not_ready(pods):
    """Pods that should serve and do not, with the reason Kubernetes gives: name, phase, reason.

    A Job's pod (the nightly backup, a migration) runs to completion and never serves: while it
    works it is not Ready, which is no fault, so it is left out; failed Jobs are ``jobs_failed``'s.
    """
    found = []
    for pod in pods or []:
        phase = _get(pod, "status", "phase")
        if phase == "Succeeded" or _owned_by_job(pod) or is_ready(pod):
            continue
        conditions = {c.get("type"): c for c in _get(pod, "status", "conditions", default=[]) or []}
        ready, scheduled = conditions.get("Ready"), conditions.get("PodScheduled") or {}
        if _get(pod, "metadata", "deletionTimestamp"):
            reason = "terminating"
        elif ready:
            reason = ready.get("reason") or ready.get("message") or "Ready is {}".format(ready.get("status"))
        else:
            reason = scheduled.get("reason") or "no Ready condition yet"
        found.append({"name": _get(pod, "metadata", "name"), "phase": phase, "reason": reason})
    return found


def jobs_failed(jobs):
    """Jobs that gave up (their Failed condition is True): name, reason, message."""
    found = []
    for job in jobs or []:
        for cond in _get(job, "status", "conditions", default=[]) or []:
            if cond.get("type") == "Failed" and cond.get("status") == "True":
                found.append(
                    {
                        "name": _get(job, "metadata", "name"),
                        "reason": cond.get("reason") or "Failed",
                        "message": cond.get("message") or "",
                    }
                )
    return found


def deployments_not_available(deployments):
    """Deployments with fewer available replicas than they want: name, available, wanted."""
    found = []
    for dep in deployments or []:
        wanted = _get(dep, "spec", "replicas", default=1)
        available = _get(dep, "status", "availableReplicas", default=0) or 0
        if available < wanted:
            found.append({"name": _get(dep, "metadata", "name"), "available": available, "wanted": wanted})
    return found


def newest_replicaset(deployment, replicasets):
    """The ReplicaSet of the Deployment's current revision (None before the controller made it)."""
    uid = _get(deployment, "metadata", "uid")
    revision = _get(deployment, "metadata", "annotations", REVISION)
    for rs in replicasets:
        owners = _get(rs, "metadata", "ownerReferences", default=[]) or []
        owned = any(o.get("uid") == uid for o in owners)
        if owned and _get(rs, "metadata", "annotations", REVISION) == revision:
            return rs
    return None


def rollout_state(deployment, replicasets, pods):
    """(done, what is still awaited) for a Deployment, its ReplicaSets and the pods of its selector."""
    name = _get(deployment, "metadata", "name")
    wanted = _get(deployment, "spec", "replicas", default=1)
    status = _get(deployment, "status", default={}) or {}
    if (status.get("observedGeneration") or 0) < (_get(deployment, "metadata", "generation") or 0):
        return False, f"{name}: the controller has not seen the new spec yet"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            raise RolloutFailed(f"{name}: {condition.get('message') or 'progress deadline exceeded'}")
    rs = newest_replicaset(deployment, replicasets)
    if rs is None:
        return False, f"{name}: no ReplicaSet of the current revision yet"
    new_hash = _get(rs, "metadata", "labels", HASH_LABEL)
    new_pods = [p for p in pods if _get(p, "metadata", "labels", HASH_LABEL) == new_hash]
    others = [p for p in pods if _get(p, "metadata", "labels", HASH_LABEL) != new_hash]
    ready = [p for p in new_pods if is_ready(p)]
    if others:
        return False, "{}: {} pod(s) of an older ReplicaSet still exist ({})".format(
            name, len(others), ", ".join(sorted(_get(p, "metadata", "name") for p in others))
        )
    if len(ready) < wanted or len(new_pods) != len(ready):
        return False, f"{name}: {len(ready)} of {wanted} new pods Ready"
    rs_name = _get(rs, "metadata", "name")
    return True, f"{name}: {len(ready)} pods of ReplicaSet {rs_name} Ready, no old pod left"


class RolloutFailed(Exception):
    pass
