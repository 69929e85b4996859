# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the collection's Kubernetes modules add to kubernetes.core: nothing of retrieve, apply or
diff (K8sService and diff_objects do those), only

- ensure(): one object present (server-side apply) or absent, with a ``changed`` that ignores the
  fields the API server writes itself, and in check mode a server-side dry run (kubernetes.core);
- masked(): Secret values replaced in whatever the module reports;
- api_error(): the API server's one-line message from an exception;
- run_k8s_module(): the client, and one fail_json saying what broke instead of a traceback.
"""

from __future__ import annotations

import copy
import json

from ansible_collections.todo.platform.plugins.module_utils.dapr_pubsub import MASK

try:
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.service import (
        K8sService,
        diff_objects,
        hide_fields,
    )

    HAS_KUBERNETES = True
except ImportError:  # the kubernetes library is missing
    HAS_KUBERNETES = False

    class CoreException(Exception):  # noqa: N818 - stand-in for kubernetes.core's
        pass


# Bookkeeping of appliers: who set which field, and kubectl's copy of the whole object as one
# string (where credential-named fields no longer guard their values).
APPLIER_FIELDS = [
    "metadata.managedFields",
    "metadata.annotations[kubectl.kubernetes.io/last-applied-configuration]",
]
# Written by the API server (or kubectl) on every change; never a difference the module made.
SERVER_FIELDS = APPLIER_FIELDS + [
    "metadata.resourceVersion",
    "metadata.generation",
    "metadata.creationTimestamp",
    "metadata.uid",
    "status",
]


class ApplyError(Exception):
    pass


class ApiUnreachable(Exception):  # noqa: N818 - named for what happened, like ApplyError
    """No answer from the API server; ``kind`` names the client's exception."""

    def __init__(self, kind, text):
        super().__init__(text)
        self.kind = kind


def comparable(obj):
    """The object without the fields the API server changes on every write."""
    return None if obj is None else hide_fields(obj, SERVER_FIELDS)


def masked(obj, other=None):
    """Mask Secret values; mark the keys whose values differ from ``other``."""
    if obj is None or obj.get("kind") != "Secret":
        return obj
    obj = copy.deepcopy(obj)
    other_data = (other or {}).get("data") or {}
    for key in ("data", "stringData"):
        if obj.get(key):
            obj[key] = {
                k: MASK if other is None or other_data.get(k) == v else MASK + " (changed)"
                for k, v in obj[key].items()
            }
    return obj


def api_error(e):
    """The API server's message for ``e`` (its JSON body), else the exception in one line."""
    e = getattr(e, "__cause__", None) or e
    body = getattr(e, "body", None)
    if body:
        try:
            return json.loads(body).get("message") or str(body)
        except (ValueError, AttributeError):
            return str(body)
    return " ".join(str(e).split())


def ensure(module, client, definition, state, field_manager):
    """Make the cluster hold ``definition`` (state=present) or not (state=absent).

    Returns dict(changed, before, after) with before/after comparable dicts (or None).
    """
    module.params["server_side_apply"] = dict(field_manager=field_manager, force_conflicts=True)
    svc = K8sService(client, module)
    resource = svc.find_resource(definition["kind"], definition["apiVersion"])
    if resource is None:
        raise ApplyError(
            "the API server does not know {} {}; install its CRD first (for Dapr: components.dapr.io)".format(
                definition["apiVersion"], definition["kind"]
            )
        )
    md = definition["metadata"]
    try:
        existing = svc.retrieve(resource, definition)
        before = comparable(existing.to_dict()) if existing else None
        if state == "absent":
            if existing:
                svc.delete(resource, definition, existing)
            return dict(changed=before is not None, before=before, after=None)
        applied, _warnings = svc.apply(resource, definition, existing)
    except CoreException as e:  # K8sService's, with the API's answer as its cause
        cause = e.__cause__
        if cause is not None and getattr(cause, "status", None) is None:
            # no answer from the API server: connection, TLS, timeout
            raise ApiUnreachable(type(cause).__name__, " ".join(str(cause).split())) from None
        raise ApplyError(
            "failed to {} {} {}/{}: {}".format(
                "delete" if state == "absent" else "apply", definition["kind"], md.get("namespace"),
                md["name"], api_error(e),
            )
        ) from None  # fmt: skip
    after = comparable(applied)
    unchanged, _diff = diff_objects(before or {}, after)
    return dict(changed=before is None or not unchanged, before=before, after=after)


def run_k8s_module(module, module_name, run):
    """``run(module, client)`` with kubernetes.core's API client; every failure ends in fail_json
    with one line saying what broke. Shared by the collection's Kubernetes modules."""
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException

    try:
        client = get_api_client(module=module)
    except CoreException as e:
        module.fail_json(msg=f"cannot build a Kubernetes client: {e}; check kubeconfig and context")
    try:
        run(module, client)
    except Exception as e:  # never a traceback: say what broke in one line
        module.fail_json(msg=f"{module_name} failed: {type(e).__name__}: {' '.join(str(e).split())}")
