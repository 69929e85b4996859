# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Idempotent server-side apply of one object through kubernetes.core's API client.

Every change is first sent as a server-side dry run; the object is written only when the dry
run differs from what the cluster holds, and never in check mode. Secrets are compared in
full but only ever reported with masked values.
"""

from __future__ import annotations

import copy

try:
    from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError, ResourceNotFoundError

    HAS_KUBERNETES = True
except ImportError:
    HAS_KUBERNETES = False

    class DynamicApiError(Exception):  # noqa: N818 - stand-in for the missing library
        pass

    class NotFoundError(DynamicApiError):
        pass

    class ResourceNotFoundError(Exception):
        pass


from ansible_collections.todo.platform.plugins.module_utils.dapr_pubsub import MASK

DRY_RUN = "All"
VOLATILE_METADATA = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid")


class ApplyError(Exception):
    pass


def comparable(obj):
    """The object without the fields the API server changes on every write."""
    if obj is None:
        return None
    obj = copy.deepcopy(obj)
    md = obj.get("metadata") or {}
    for key in VOLATILE_METADATA:
        md.pop(key, None)
    annotations = md.get("annotations") or {}
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if "annotations" in md and not annotations:
        md.pop("annotations")
    obj.pop("status", None)
    return obj


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


def _reason(e):
    body = getattr(e, "body", None)
    if body:
        try:
            import json

            return json.loads(body).get("message") or str(body)
        except (ValueError, AttributeError):
            return str(body)
    return str(e)


def find_resource(client, definition):
    try:
        return client.resource(definition["kind"], definition["apiVersion"])
    except ResourceNotFoundError:
        raise ApplyError(
            "the API server does not know {} {}; install its CRD first (for Dapr: components.dapr.io)".format(
                definition["apiVersion"], definition["kind"]
            )
        ) from None


def ensure(client, definition, state, check_mode, field_manager):
    """Make the cluster hold ``definition`` (state=present) or not (state=absent).

    Returns dict(changed, before, after) where before/after are comparable dicts (or None).
    """
    resource = find_resource(client, definition)
    name = definition["metadata"]["name"]
    namespace = definition["metadata"].get("namespace")
    what = "{} {}/{}".format(definition["kind"], namespace, name)
    try:
        try:
            existing = resource.get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            existing = None
        if state == "absent":
            if existing is None:
                return dict(changed=False, before=None, after=None)
            resource.delete(name=name, namespace=namespace, **({"dry_run": DRY_RUN} if check_mode else {}))
            return dict(changed=True, before=comparable(existing), after=None)
        params = dict(
            body=definition, name=name, namespace=namespace, field_manager=field_manager, force_conflicts=True
        )
        preview = resource.server_side_apply(dry_run=DRY_RUN, **params).to_dict()
        changed = existing is None or comparable(existing) != comparable(preview)
        result = preview
        if changed and not check_mode:
            result = resource.server_side_apply(**params).to_dict()
        return dict(changed=changed, before=comparable(existing), after=comparable(result))
    except DynamicApiError as e:
        raise ApplyError(
            "failed to {} {}: {}".format("delete" if state == "absent" else "apply", what, _reason(e))
        ) from None
