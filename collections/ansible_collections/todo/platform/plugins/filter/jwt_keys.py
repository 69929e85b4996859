# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The JWT keys the apps role deploys, from the deployed Secret and the inventory's secret.

The services sign with JWT_SECRET (its ``kid`` JWT_KEY_ID) and, during a rotation, still verify with
JWT_PREVIOUS_SECRET (JWT_PREVIOUS_KEY_ID). The rotation state lives in the ``todo-app`` Secret, so
site.yml and the rotate-secrets runbook share one rule:

* no Secret yet: key id ``1``, no previous key;
* same secret as deployed: same key id; the previous key stays until ``overlap_seconds`` after the
  rotation, then it is dropped (0 drops it now);
* a new secret: the next key id; the deployed key becomes the previous one for ``overlap_seconds``.
"""

from __future__ import annotations

import base64
import time

from ansible.errors import AnsibleFilterError

DEFAULT_KEY_ID = "1"
#: Secret keys (data) and the annotation holding the rotation time (epoch seconds).
SECRET_KEY, KEY_ID_KEY = "jwt-secret", "jwt-key-id"
PREVIOUS_SECRET_KEY, PREVIOUS_KEY_ID_KEY = "jwt-previous-secret", "jwt-previous-key-id"
ROTATED_AT_ANNOTATION = "todo.platform/jwt-rotated-at"


def _next_key_id(key_id: str) -> str:
    return str(int(key_id) + 1) if key_id.isdigit() else DEFAULT_KEY_ID


def _decoded(data: dict, key: str) -> str:
    value = data.get(key)
    return base64.b64decode(value).decode() if value else ""


def jwt_keys(deployed, secret, overlap_seconds, now=None):
    """``deployed``: k8s_info's resources for the todo-app Secret (empty list: none yet).
    Returns key_id, previous_secret, previous_key_id, rotated_at ('' when no previous key)."""
    if not isinstance(deployed, list) or len(deployed) > 1:
        raise AnsibleFilterError("jwt_keys: expected k8s_info's resources of one Secret (a list)")
    try:
        overlap = int(overlap_seconds)
    except (TypeError, ValueError):
        overlap = -1
    if overlap < 0:
        raise AnsibleFilterError(
            "apps_jwt_rotation_overlap_seconds must be a whole number of seconds >= 0, "
            f"not {overlap_seconds!r}"
        )
    now = int(time.time() if now is None else now)
    none = {"key_id": DEFAULT_KEY_ID, "previous_secret": "", "previous_key_id": "", "rotated_at": ""}
    if not deployed:
        return none
    data = deployed[0].get("data") or {}
    annotations = deployed[0].get("metadata", {}).get("annotations") or {}
    current = _decoded(data, SECRET_KEY)
    key_id = _decoded(data, KEY_ID_KEY) or DEFAULT_KEY_ID  # deployed before key ids: the default
    if not current:
        return none
    if secret != current:
        if overlap == 0:
            return dict(none, key_id=_next_key_id(key_id))
        return {
            "key_id": _next_key_id(key_id),
            "previous_secret": current,
            "previous_key_id": key_id,
            "rotated_at": str(now),
        }
    previous, rotated_at = _decoded(data, PREVIOUS_SECRET_KEY), annotations.get(ROTATED_AT_ANNOTATION, "")
    if previous and rotated_at.isdigit() and int(rotated_at) + overlap > now:
        return {
            "key_id": key_id,
            "previous_secret": previous,
            "previous_key_id": _decoded(data, PREVIOUS_KEY_ID_KEY),
            "rotated_at": rotated_at,
        }
    return dict(none, key_id=key_id)


class FilterModule:
    def filters(self):
        return {"jwt_keys": jwt_keys}
