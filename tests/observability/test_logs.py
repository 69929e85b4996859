"""Logs: every line the services write validates against docs/log-line.schema.json, planted
secrets (password, token, Authorization header, connection string) never appear in a line, and
every saved log query finds a message some service really writes."""

from __future__ import annotations

import ast
import io
import json
import logging
import re
import uuid

import jsonschema
import pytest
from common import DASHBOARDS_DIR, LOG_SCHEMA, ROOT, SERVICES

SCHEMA = json.loads(LOG_SCHEMA.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


def schema_errors(line: str) -> list[str]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return [f"not JSON: {exc}"]
    return [f"{'/'.join(map(str, e.path)) or '<line>'}: {e.message}" for e in VALIDATOR.iter_errors(record)]


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_schema_rejects_lines_that_break_the_contract() -> None:
    good = {
        "timestamp": "2026-11-29T01:02:03.456789Z",
        "level": "info",
        "service": "backend",
        "logger": "todo.backend",
        "message": "request",
        "request_id": "5d0c0b2b3c2f4a8e9d8c7b6a5f4e3d2c",
        "user_id": str(uuid.uuid4()),
        "duration_ms": 1.5,
        "password": "[REDACTED]",
    }
    assert schema_errors(json.dumps(good)) == []
    for broken in (
        {"level": "INFO"},
        {"service": "todo"},
        {"timestamp": "2026-11-29 01:02:03"},
        {"timestamp": "2026-11-29T01:02:03+02:00"},
        {"password": "hunter2"},
        {"authorization": "Bearer abc"},
        {"database_url": "postgresql://u:p@h/db"},
        {"duration_ms": "fast"},
    ):
        assert schema_errors(json.dumps(good | broken)), broken
    assert schema_errors("plain text") != []


@pytest.fixture
def captured_logging() -> io.StringIO:
    """The shared logging configuration of the services, writing into a buffer."""
    from todo.common.logging import configure_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("backend", "DEBUG", stream=stream)
    yield stream
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def test_shared_logging_renders_schema_valid_lines_without_secrets(captured_logging: io.StringIO) -> None:
    from todo.common.logging import get_logger

    secret = f"S3cret-{uuid.uuid4().hex}"
    log = get_logger("todo.backend.test")
    log.info("login attempt", password=secret, user_id=str(uuid.uuid4()))
    log.warning("upstream refused", headers={"Authorization": f"Bearer {secret}"}, token=secret)
    log.error("database unreachable", error=f"could not connect to postgresql://todo:{secret}@db:5432/todo")
    logging.getLogger("uvicorn.error").warning("client sent api_key=%s", secret)
    try:
        raise RuntimeError(f"DATABASE_URL=postgresql://todo:{secret}@db/todo failed")
    except RuntimeError:
        log.exception("task creation failed")
    lines = captured_logging.getvalue().splitlines()
    assert len(lines) == 5
    for line in lines:
        assert schema_errors(line) == [], line
        assert secret not in line
    assert json.loads(lines[-1])["message"] == "task creation failed"


@pytest.mark.testbed
@pytest.mark.slow
@pytest.mark.parametrize("service", SERVICES)
def test_service_log_lines_follow_the_schema_and_hold_no_secret(observed, service: str) -> None:
    path = observed.platform.log_files[service]
    # The test bed's process manager writes a "=== testbed <time> start: <argv>" header into the
    # file before each start of the process; everything else is the service's own stdout/stderr.
    lines = [
        line
        for line in path.read_text(errors="replace").splitlines()
        if line.strip() and not line.startswith("=== testbed ")
    ]
    assert len(lines) >= 3, f"{path}: only {len(lines)} lines"
    problems = [(i + 1, err) for i, line in enumerate(lines) for err in schema_errors(line)]
    assert problems == [], f"{path}: {problems[:10]}"
    for line in lines:
        assert json.loads(line)["service"] == service
    for what, value in observed.planted.values().items():
        leaked = [i + 1 for i, line in enumerate(lines) if value in line]
        assert leaked == [], f"{path}: the planted {what} appears on lines {leaked}"


SERVICES_SRC = ROOT / "services" / "src" / "todo"
# Python package of each service (the shared package "common" logs for all of them).
PACKAGES = {"backend": "backend", "audit": "audit", "recurring-task": "recurring",
            "notification": "notification", "sync": "sync"}  # fmt: skip
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}


def emitted_messages() -> list[tuple[str, str]]:
    """(package, message) of every log call with a literal message in the services' code."""
    found = []
    for path in sorted(SERVICES_SRC.rglob("*.py")):
        package = path.relative_to(SERVICES_SRC).parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOG_METHODS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.append((package, node.args[0].value))
    return found


def saved_queries() -> list[tuple[str, str]]:
    """(where, LogQL) of every saved query with a line filter: the Logs dashboard and the table of
    docs/observability.md."""
    board = json.loads((DASHBOARDS_DIR / "logs.json").read_text())
    queries = [
        (f"logs.json: {panel['title']}", target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
        if "|=" in target["expr"]
    ]
    doc = (ROOT / "docs" / "observability.md").read_text()
    section = doc.split("## Saved queries", 1)[1].split("\n## ", 1)[0]
    for row in re.findall(r"^\|([^|]+)\|\s*`(.+)`\s*\|\s*$", section, flags=re.M):
        if "|=" in row[1]:
            queries.append((f"docs/observability.md: {row[0].strip()}", row[1].replace("\\|", "|")))
    return queries


SAVED = saved_queries()


def test_the_saved_queries_are_found() -> None:
    assert len([w for w, _ in SAVED if w.startswith("logs.json")]) >= 3
    assert len([w for w, _ in SAVED if w.startswith("docs/")]) >= 3


@pytest.mark.parametrize(("where", "query"), SAVED, ids=[w for w, _ in SAVED])
def test_saved_query_matches_a_message_a_service_writes(where: str, query: str, captured_logging) -> None:
    from todo.common.logging import get_logger

    (needle,) = re.findall(r'\|= "([^"]+)"', query)
    service = re.search(r'\bservice="([^"$]+)"', query)
    packages = {"common", PACKAGES[service.group(1)]} if service else {"common", *PACKAGES.values()}
    messages = [m for package, m in emitted_messages() if package in packages and needle in m]
    assert messages, f"{where}: no service writes a message containing {needle!r} ({query})"
    # The line as Loki holds it (Alloy strips only the CRI framing): |= matches the raw JSON line.
    get_logger("todo.test").warning(messages[0], error="RuntimeError: boom")
    line = captured_logging.getvalue().splitlines()[-1]
    assert needle in line and json.loads(line)["message"] == messages[0]
