# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The JWT rotation rule of the apps role: key ids, the previous key, its overlap."""

from __future__ import annotations

import base64

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.todo.platform.plugins.filter.jwt_keys import FilterModule, jwt_keys

OLD, NEW = "o" * 40, "n" * 40


def secret(data: dict[str, str], rotated_at: str | None = None) -> list[dict]:
    meta = {"annotations": {"todo.platform/jwt-rotated-at": rotated_at}} if rotated_at else {}
    return [{"metadata": meta, "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}]


def test_first_deploy_and_a_deployment_from_before_key_ids_sign_with_key_1():
    assert jwt_keys([], OLD, 3600)["key_id"] == "1"
    assert jwt_keys(secret({"jwt-secret": OLD}), OLD, 3600) == {
        "key_id": "1",
        "previous_secret": "",
        "previous_key_id": "",
        "rotated_at": "",
    }


def test_a_new_secret_gets_the_next_key_id_and_the_old_key_verifies_for_the_overlap():
    keys = jwt_keys(secret({"jwt-secret": OLD, "jwt-key-id": "4"}), NEW, 3600, now=1000)
    assert keys == {"key_id": "5", "previous_secret": OLD, "previous_key_id": "4", "rotated_at": "1000"}


def test_the_previous_key_stays_during_the_overlap_and_goes_after_it():
    deployed = secret(
        {"jwt-secret": NEW, "jwt-key-id": "5", "jwt-previous-secret": OLD, "jwt-previous-key-id": "4"},
        rotated_at="1000",
    )
    during = jwt_keys(deployed, NEW, 3600, now=4599)
    assert during == {"key_id": "5", "previous_secret": OLD, "previous_key_id": "4", "rotated_at": "1000"}
    after = jwt_keys(deployed, NEW, 3600, now=4600)
    assert after == {"key_id": "5", "previous_secret": "", "previous_key_id": "", "rotated_at": ""}
    # the runbook option: overlap 0 drops it now
    assert jwt_keys(deployed, NEW, 0, now=1001)["previous_secret"] == ""


def test_overlap_zero_rotates_without_keeping_the_old_key():
    keys = jwt_keys(secret({"jwt-secret": OLD, "jwt-key-id": "1"}), NEW, 0, now=1000)
    assert keys == {"key_id": "2", "previous_secret": "", "previous_key_id": "", "rotated_at": ""}


@pytest.mark.parametrize("overlap", [-1, "soon", None])
def test_a_bad_overlap_says_what_to_set(overlap):
    with pytest.raises(AnsibleFilterError, match="apps_jwt_rotation_overlap_seconds"):
        jwt_keys([], OLD, overlap)


def test_the_filter_is_registered():
    assert FilterModule().filters()["jwt_keys"] is jwt_keys
