"""Request id / traceparent handling and settings from the environment and secret files."""

from __future__ import annotations

import pytest
from todo.common.context import clean_request_id, trace_from_traceparent
from todo.common.settings import ServiceSettings

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_traceparent_is_continued_with_a_new_span():
    trace = trace_from_traceparent(PARENT)
    assert trace.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert trace.span_id != "b7ad6b7169203331" and len(trace.span_id) == 16
    assert trace.traceparent.startswith("00-0af7651916cd43dd8448eb211c80319c-")


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "",
        "garbage",
        "00-" + "0" * 32 + "-b7ad6b7169203331-01",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad",
    ],
)
def test_invalid_traceparent_starts_a_new_trace(bad):
    trace = trace_from_traceparent(bad)
    assert len(trace.trace_id) == 32 and trace.trace_id != "0" * 32


def test_request_ids_are_kept_only_when_sane():
    assert clean_request_id("abc-123") == "abc-123"
    for bad in (None, "", "x" * 200, "has space", 'inject"\n{json}'):
        new = clean_request_id(bad)
        assert new != bad and len(new) == 32


def test_secrets_come_from_files_and_env_wins(tmp_path, monkeypatch):
    secret = tmp_path / "jwt"
    secret.write_text("from-file-secret\n")
    monkeypatch.setenv("JWT_SECRET_FILE", str(secret))
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db:5432/todo")
    monkeypatch.delenv("JWT_SECRET", raising=False)
    s = ServiceSettings()
    assert s.jwt_secret.get_secret_value() == "from-file-secret"
    assert s.database_url.get_secret_value() == "postgresql+asyncpg://u:p@db:5432/todo"
    assert "p@db" not in repr(s)
    monkeypatch.setenv("JWT_SECRET", "from-env")
    assert ServiceSettings().jwt_secret.get_secret_value() == "from-env"


def test_bad_settings_fail_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://x")
    with pytest.raises(ValueError, match="postgresql"):
        ServiceSettings()
    monkeypatch.setenv("DATABASE_URL", "postgresql://x/y")
    monkeypatch.setenv("JWT_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="JWT_SECRET_FILE"):
        ServiceSettings()


def test_a_previous_jwt_key_whose_file_is_gone_is_no_previous_key(tmp_path, monkeypatch):
    # the overlap ended and the key left the Secret while a pod of the older template started
    current = tmp_path / "jwt"
    current.write_text("current-secret-of-32-characters-x\n")
    monkeypatch.setenv("JWT_SECRET_FILE", str(current))
    monkeypatch.setenv("JWT_PREVIOUS_SECRET_FILE", str(tmp_path / "jwt-previous-secret"))
    monkeypatch.setenv("JWT_PREVIOUS_KEY_ID", "1")
    settings = ServiceSettings()
    assert settings.jwt_previous_secret is None
    assert settings.jwt_secret.get_secret_value() == "current-secret-of-32-characters-x"


def test_generated_ids_are_unique_lowercase_hex_of_w3c_length():
    import re

    traces = [trace_from_traceparent(None) for _ in range(2000)]
    assert len({t.trace_id for t in traces}) == len(traces)
    assert len({t.span_id for t in traces}) == len(traces)
    assert all(re.fullmatch(r"[0-9a-f]{32}", t.trace_id) for t in traces)
    assert all(re.fullmatch(r"[0-9a-f]{16}", t.span_id) for t in traces)
    request_ids = {clean_request_id(None) for _ in range(2000)}
    assert len(request_ids) == 2000 and all(re.fullmatch(r"[0-9a-f]{32}", r) for r in request_ids)
