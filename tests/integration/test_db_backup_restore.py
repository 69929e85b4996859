"""Backup and restore of the Todo database with the scripts the backup CronJob and the backup and
restore runbooks run (roles/backup/files), against the test bed's PostgreSQL with every service's
migrations: every task, audit row and pending reminder comes back, and the outbox agrees with the
consumers' processed ids, so the relay publishes exactly the events some consumer still lacks.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from testbed.postgres import pg_bindir
from todo.common.migrations import PACKAGES, upgrade

pytestmark = pytest.mark.testbed

FILES = Path(__file__).resolve().parents[2] / "roles" / "backup" / "files"
CREATED, COMPLETED = "com.todo.task.created", "com.todo.task.completed"


def run_script(name: str, dsn: str, backup_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(FILES / name)],
        env={
            **os.environ,
            "PATH": f"{pg_bindir()}:{os.environ['PATH']}",
            "DATABASE_URL": dsn,
            "BACKUP_DIR": str(backup_dir),
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
    )


def rows(conn: psycopg.Connection, query: str) -> list[tuple]:
    return conn.execute(query).fetchall()


def snapshot(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    return {
        "tasks": rows(conn, "SELECT id, title, status, version FROM backend.tasks ORDER BY id"),
        "audit": rows(conn, "SELECT event_id, event_type, task_id FROM audit.audit_log ORDER BY id"),
        "reminders": rows(
            conn, "SELECT task_id, state, fire_at FROM notification.reminders ORDER BY task_id"
        ),
        "processed": rows(
            conn,
            "SELECT 'audit', event_id FROM audit.processed_events UNION ALL "
            "SELECT 'notification', event_id FROM notification.processed_events UNION ALL "
            "SELECT 'recurring', event_id FROM recurring.processed_events ORDER BY 1, 2",
        ),
    }


def plant(conn: psycopg.Connection) -> dict[str, str]:
    """A user with three tasks, a pending reminder, and task events in each state the reconciliation
    tells apart. Returns event name -> id."""
    user, tasks = uuid.uuid4(), [uuid.uuid4() for _ in range(3)]
    events = {name: str(uuid.uuid4()) for name in ("done", "unmarked", "lagging", "pending")}
    conn.execute(
        "INSERT INTO backend.users (id, email, password_hash) VALUES (%s, 'ada@example.test', 'x')",
        (user,),
    )
    for i, task in enumerate(tasks):
        conn.execute(
            "INSERT INTO backend.tasks (id, user_id, title, series_id) VALUES (%s, %s, %s, %s)",
            (task, user, f"task {i}", task),
        )
    conn.execute(
        "INSERT INTO notification.reminders (task_id, user_id, state, fire_at, task_version, task) "
        "VALUES (%s, %s, 'pending', now() + interval '1 day', 1, '{}')",
        (tasks[0], user),
    )
    # done: published, marked sent, applied by every consumer
    # unmarked: published and applied everywhere, but the relay had not yet marked it sent
    # lagging: a completion marked sent that recurring-task had not applied yet (consumer lag)
    # pending: not published yet
    outbox = [
        ("done", CREATED, True),
        ("unmarked", CREATED, False),
        ("lagging", COMPLETED, True),
        ("pending", CREATED, False),
    ]
    for name, event_type, sent in outbox:
        conn.execute(
            "INSERT INTO backend.outbox (event_id, topic, event_type, partition_key, payload, sent_at) "
            "VALUES (%s, 'task-events', %s, %s, '{}', CASE WHEN %s THEN now() END)",
            (events[name], event_type, str(tasks[1]), sent),
        )
    for name in ("done", "unmarked", "lagging"):
        event_type = COMPLETED if name == "lagging" else CREATED
        for schema in ("audit", "notification"):
            conn.execute(
                f"INSERT INTO {schema}.processed_events (event_id, topic, event_type) "  # noqa: S608 - fixed names
                "VALUES (%s, 'task-events', %s)",
                (events[name], event_type),
            )
        conn.execute(
            "INSERT INTO audit.audit_log (event_id, event_type, source, task_id, user_id, event_time, "
            "envelope, data) VALUES (%s, %s, '/todo/backend', %s, %s, now(), '{}', '{}')",
            (events[name], event_type, tasks[1], user),
        )
    return events


def outbox_state(conn: psycopg.Connection) -> dict[str, bool]:
    return {
        str(e): sent for e, sent in rows(conn, "SELECT event_id, sent_at IS NOT NULL FROM backend.outbox")
    }


def test_restore_brings_back_every_row_and_publishes_only_what_a_consumer_lacks(pg, tmp_path) -> None:
    dsn = pg.create_database("todo_backup_restore")
    for package in PACKAGES:
        upgrade(package, dsn)
    backups = tmp_path / "backups"
    backups.mkdir()
    # two older dumps: with BACKUP_KEEP=2 the oldest goes, the newer stays beside the new one
    for old in ("todo-20240101T000000Z.dump", "todo-20250101T000000Z.dump"):
        (backups / old).write_text("old")
    with psycopg.connect(dsn, autocommit=True) as conn:
        events = plant(conn)
        before = snapshot(conn)

        backup = run_script("todo-db-backup.sh", dsn, backups, BACKUP_KEEP="2")
        assert backup.returncode == 0, backup.stderr
        kept = sorted(p.name for p in backups.iterdir())
        assert len(kept) == 2 and kept[0] == "todo-20250101T000000Z.dump", kept
        assert "todo-20240101T000000Z.dump" in backup.stdout  # reported as removed

        # the disaster: a schema dropped, tasks deleted, a write after the backup
        conn.execute("DROP SCHEMA audit CASCADE")
        conn.execute("DELETE FROM backend.tasks")
        conn.execute("UPDATE notification.reminders SET state = 'fired'")

    restore = run_script("todo-db-restore.sh", dsn, backups, BACKUP_FILE="latest")
    assert restore.returncode == 0, restore.stderr
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert snapshot(conn) == before
        assert before["tasks"] and before["audit"] and before["reminders"][0][1] == "pending"
        # what the relay publishes after the restore: the rows with sent_at NULL
        assert outbox_state(conn) == {
            events["done"]: True,  # every consumer has it
            events["unmarked"]: True,  # published before the backup: not a second time
            events["lagging"]: False,  # recurring-task lacks it: published again, once
            events["pending"]: False,  # never published: published once
        }
        # a second reconciliation (a restore run twice) changes nothing
        second = run_script("todo-db-restore.sh", dsn, backups, BACKUP_FILE="latest")
        assert second.returncode == 0, second.stderr
        assert outbox_state(conn)[events["unmarked"]] is True


def test_restore_of_a_missing_backup_says_what_to_do(pg, tmp_path) -> None:
    dsn = pg.create_database("todo_backup_missing")
    for file, message in (
        ("todo-19990101T000000Z.dump", "no backup named"),
        ("../etc/passwd", "not a path"),
        ("latest", "no backup in"),
    ):
        result = run_script("todo-db-restore.sh", dsn, tmp_path, BACKUP_FILE=file)
        assert result.returncode == 2 and message in result.stderr, (file, result.stderr)
    bad_keep = run_script("todo-db-backup.sh", dsn, tmp_path, BACKUP_KEEP="0")
    assert bad_keep.returncode == 2 and "BACKUP_KEEP" in bad_keep.stderr
