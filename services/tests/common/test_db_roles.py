"""One database role per service, allowed only into its own schema (issue 17, item 11).

On the test bed's real PostgreSQL: ``todo-migrate all`` as a deployment runs it (migrations as the
owner, then the service roles), and the privileges each role ends up with. The whole platform
(``todo_platform``) runs every service as its own role, so every integration and e2e test that
starts services exercises these grants too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

pytestmark = pytest.mark.testbed

PACKAGES = ("backend", "audit", "recurring", "notification", "sync")
TODO_MIGRATE = str(Path(sys.executable).with_name("todo-migrate"))


def todo_migrate(dsn: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_"))}
    return subprocess.run(
        [TODO_MIGRATE, "all"],
        env={**clean, "DATABASE_URL": dsn, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def roles(pg):
    """A migrated database and each service's login role: {package: dsn}."""
    database = "svc_db_roles_test"
    dsn = pg.create_database(database)
    prefix = f"rolestest_{uuid.uuid4().hex[:8]}"
    passwords = {p: uuid.uuid4().hex for p in PACKAGES}
    done = todo_migrate(
        dsn, DB_SERVICE_ROLE_PREFIX=prefix, **{f"DB_PASSWORD_{p.upper()}": pw for p, pw in passwords.items()}
    )
    assert done.returncode == 0, done.stderr
    yield {p: f"postgresql://{prefix}_{p}:{passwords[p]}@{pg.host}:{pg.port}/{database}" for p in PACKAGES}
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for p in PACKAGES:
            conn.execute(f'DROP ROLE IF EXISTS "{prefix}_{p}"')


def run(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(statement)
        conn.rollback()  # only whether it is allowed matters


def refused(dsn: str, statement: str) -> bool:
    try:
        run(dsn, statement)
    except errors.InsufficientPrivilege:
        return True
    return False


UPDATE_TASKS = "UPDATE backend.tasks SET title = 'owned' WHERE true"


def test_the_sync_role_may_not_touch_tasks(roles):
    assert refused(roles["sync"], UPDATE_TASKS)
    assert refused(roles["sync"], "SELECT count(*) FROM backend.tasks")
    assert refused(roles["sync"], "INSERT INTO backend.outbox (topic) VALUES ('task-events')")


def test_each_role_uses_its_own_schema_only(roles):
    run(roles["backend"], UPDATE_TASKS)
    run(roles["backend"], "DELETE FROM backend.outbox WHERE true")
    run(roles["notification"], "UPDATE notification.reminders SET fired_at = now() WHERE false")
    run(roles["recurring"], "DELETE FROM recurring.processed_events WHERE false")
    for package in ("audit", "recurring", "notification", "sync"):
        assert refused(roles[package], UPDATE_TASKS), package
    assert refused(roles["backend"], "SELECT count(*) FROM audit.audit_log")
    assert refused(roles["notification"], "DELETE FROM backend.users WHERE true")


def test_the_audit_log_is_append_only_and_no_service_changes_the_schema(roles):
    run(roles["audit"], "SELECT count(*) FROM audit.audit_log")
    assert refused(roles["audit"], "UPDATE audit.audit_log SET task_id = NULL WHERE true")
    assert refused(roles["audit"], "DELETE FROM audit.audit_log WHERE true")
    for package in PACKAGES:
        assert refused(roles[package], f"CREATE TABLE {package}.planted (id int)"), package
        version_table = f"{package}.alembic_version"
        assert refused(roles[package], f"UPDATE {version_table} SET version_num = 'x'"), package  # noqa: S608


def test_the_server_stores_a_scram_verifier_never_the_password(roles, pg):
    role = roles["sync"].split("//")[1].split(":")[0]
    with psycopg.connect(pg.dsn()) as conn:
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()[0]
    assert stored.startswith("SCRAM-SHA-256$4096:")


def test_a_missing_role_without_its_password_is_named(pg):
    dsn = pg.create_database("svc_db_roles_missing")
    done = todo_migrate(dsn, DB_SERVICE_ROLE_PREFIX=f"absent_{uuid.uuid4().hex[:8]}")
    assert done.returncode == 1
    assert "does not exist: create it (CREATE ROLE absent_" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_running_sync_service_cannot_update_tasks(todo_platform):
    """The DSN the test bed gives the sync process: not the owner's, and refused on tasks."""
    sync_dsn = todo_platform.service_env("sync")["DATABASE_URL"]
    sync_refused = refused(sync_dsn, UPDATE_TASKS)  # a name, so a failure does not print the DSN
    assert sync_refused, "the sync process's database role may update tasks"
    assert sync_dsn != todo_platform.dsn, "the sync process connects as the owner"
    backend_refused = refused(todo_platform.service_env("backend")["DATABASE_URL"], UPDATE_TASKS)
    assert not backend_refused


def test_a_migration_role_that_may_not_change_a_role_is_told_what_to_grant(pg):
    # A managed database: the administrator made the service role, and the migration role lacks
    # CREATEROLE (or, on PostgreSQL 16+, ADMIN OPTION on a role it did not create).
    database, suffix = "svc_db_roles_denied", uuid.uuid4().hex[:8]
    migrator, prefix, password = f"migrator_{suffix}", f"denied_{suffix}", uuid.uuid4().hex
    pg.create_database(database)
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {migrator} LOGIN PASSWORD '{password}'")
        conn.execute(f"GRANT CREATE ON DATABASE {database} TO {migrator}")
        conn.execute(f"CREATE ROLE {prefix}_backend LOGIN")
    try:
        dsn = f"postgresql://{migrator}:{password}@{pg.host}:{pg.port}/{database}"
        done = todo_migrate(dsn, DB_SERVICE_ROLE_PREFIX=prefix, DB_PASSWORD_BACKEND=uuid.uuid4().hex)
        assert done.returncode == 1, done.stderr
        assert f"may not set the password of database role {prefix}_backend" in done.stderr, done.stderr
        assert f"GRANT {prefix}_backend TO {migrator} WITH ADMIN OPTION" in done.stderr, done.stderr
        assert "SCRAM-SHA-256$" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    finally:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f"DROP ROLE IF EXISTS {prefix}_backend")
            conn.execute(f"DROP ROLE IF EXISTS {migrator}")
