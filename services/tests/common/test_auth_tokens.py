"""Access tokens: a token verified once is remembered, but never past its expiry."""

from __future__ import annotations

import time
import uuid

import pytest
from todo.common import auth
from todo.common.errors import ProblemError

SECRET = "unit-test-secret-" + "z" * 32


def test_a_remembered_token_still_expires(monkeypatch):
    user = uuid.uuid4()
    token = auth.create_access_token(user, SECRET, ttl_seconds=60)
    assert auth.decode_access_token(token, SECRET) == user
    assert auth._verified_token.cache_info().currsize >= 1
    later = time.time() + 61
    monkeypatch.setattr(auth.time, "time", lambda: later)
    with pytest.raises(ProblemError) as caught:
        auth.decode_access_token(token, SECRET)
    assert caught.value.status == 401 and caught.value.problem == "expired-token"


def test_a_remembered_token_is_not_valid_under_another_secret():
    token = auth.create_access_token(uuid.uuid4(), SECRET)
    auth.decode_access_token(token, SECRET)
    with pytest.raises(ProblemError) as caught:
        auth.decode_access_token(token, "another-secret-" + "q" * 32)
    assert caught.value.problem == "invalid-token"


def test_a_failed_token_is_not_remembered():
    before = auth._verified_token.cache_info().currsize
    with pytest.raises(ProblemError):
        auth.decode_access_token("not.a.jwt", SECRET)
    assert auth._verified_token.cache_info().currsize == before
