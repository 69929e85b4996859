"""The expand/contract migration policy (docs/runbooks.md, "Upgrade and rollback: the migration
policy"): during a rollout and after a rollback of the image, the previous image runs against the
new schema.

* Two real consecutive expand migrations (migration_policy/0002, 0003) are applied by Alembic to
  the test bed's PostgreSQL on top of the backend's own; after each, the current backend code -
  the "previous image" - registers, creates, updates, completes and lists tasks, and what it wrote
  before is still there.
* The counter-example, a contract migration (dropping a column the previous image writes: tags), breaks
  that code: the check can fail.
* Every migration of the services is expand-only (a static check of their ``upgrade()``), unless
  it says ``# contract:`` with why it is safe.
"""

from __future__ import annotations

import ast
import asyncio
import shutil
import uuid
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from todo.backend import service
from todo.backend.schemas import TaskCreate, TaskUpdate
from todo.backend.service import TaskFilter
from todo.common.db import Database

pytestmark = pytest.mark.testbed

ROOT = Path(__file__).resolve().parents[2]
BACKEND_MIGRATIONS = ROOT / "services" / "src" / "todo" / "backend" / "migrations"
POLICY = Path(__file__).parent / "migration_policy"
EXPAND = ["0002_expand_task_estimate.py", "0003_expand_task_source.py"]
CONTRACT = ["0002_expand_task_estimate.py", "contract_drop_tags.py"]

#: operations of upgrade() that break the previous image (or lock a table for a rewrite)
CONTRACT_OPS = {"drop_column", "drop_table", "rename_table", "drop_constraint", "create_check_constraint"}


def contract_operations(path: Path) -> list[str]:
    """The contract operations in a migration's upgrade(), unless a line says ``# contract:``."""
    source = path.read_text()
    if "# contract:" in source:
        return []
    tree = ast.parse(source)
    (upgrade,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"]
    found = []
    for node in ast.walk(upgrade):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = node.func.attr
        keywords = {k.arg: k.value for k in node.keywords}
        if name in CONTRACT_OPS:
            found.append(name)
        elif name == "alter_column" and (
            "new_column_name" in keywords
            or "type_" in keywords
            or (isinstance(keywords.get("nullable"), ast.Constant) and keywords["nullable"].value is False)
        ):
            found.append("alter_column")
        elif name == "add_column":
            column = node.args[1] if len(node.args) > 1 else None
            if isinstance(column, ast.Call):
                kw = {k.arg: k.value for k in column.keywords}
                not_null = isinstance(kw.get("nullable"), ast.Constant) and kw["nullable"].value is False
                if not_null and "server_default" not in kw:
                    found.append("add_column NOT NULL without a server default")
    return found


def alembic_config(tmp_path: Path, extra: list[str], dsn: str) -> Config:
    """The backend's migrations (env.py, its versions) plus the given test migrations."""
    location = tmp_path / "migrations"
    shutil.copytree(BACKEND_MIGRATIONS, location, ignore=shutil.ignore_patterns("__pycache__"))
    for name in extra:
        shutil.copy(POLICY / name, location / "versions" / name)
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    cfg.attributes["database_url"] = dsn
    return cfg


async def previous_image_works(dsn: str, user_email: str) -> int:
    """What the running (previous) backend does, against whatever schema is there now; returns how
    many tasks the user has."""
    db = Database(dsn, pool_size=2, max_overflow=0)
    try:
        async with db.session() as session:
            try:
                user = await service.authenticate(session, user_email, "correct horse battery")
            except Exception:
                user = await service.register_user(session, user_email, "correct horse battery")
        created = await service.create_task(
            db, user.id, TaskCreate(title="write the runbook", description="d")
        )
        task_id = uuid.UUID(str(created["id"]))
        async with db.session() as session:
            await service.update_task(session, user.id, task_id, TaskUpdate(title="write the runbooks"))
        async with db.session() as session:
            await service.set_completed(session, user.id, task_id, True)
        tasks, _ = await service.list_tasks(db, user.id, TaskFilter())
        assert any(t["title"] == "write the runbooks" for t in map(_as_dict, tasks))
        return len(tasks)
    finally:
        await db.dispose()


def _as_dict(task: object) -> dict:
    return task if isinstance(task, dict) else {"title": getattr(task, "title", None)}


def test_the_previous_image_runs_on_each_of_two_consecutive_expand_migrations(pg, tmp_path) -> None:
    dsn = pg.create_database("todo_migration_policy")
    cfg = alembic_config(tmp_path, EXPAND, dsn)
    command.upgrade(cfg, "0001")
    assert asyncio.run(previous_image_works(dsn, "ada@example.test")) == 1
    for revision, tasks_before in (("0002", 1), ("0003", 2)):
        command.upgrade(cfg, revision)
        # the rows the previous image wrote are there, and it keeps working
        assert asyncio.run(previous_image_works(dsn, "ada@example.test")) == tasks_before + 1, revision


def test_a_contract_migration_breaks_the_previous_image(pg, tmp_path) -> None:
    dsn = pg.create_database("todo_migration_contract")
    cfg = alembic_config(tmp_path, CONTRACT, dsn)
    command.upgrade(cfg, "head")
    with pytest.raises(Exception, match="tags"):
        asyncio.run(previous_image_works(dsn, "bob@example.test"))


def test_every_service_migration_is_expand_only() -> None:
    migrations = sorted((ROOT / "services" / "src" / "todo").glob("*/migrations/versions/*.py"))
    migrations = [m for m in migrations if m.name != "__init__.py"]
    assert migrations, "no service migrations found"
    problems = {str(m.relative_to(ROOT)): ops for m in migrations if (ops := contract_operations(m))}
    assert not problems, (
        "migrations that break the previous image (expand/contract policy, docs/runbooks.md): "
        f"{problems}; split them into expand now and contract in a later release, or mark a line "
        "'# contract: <why the previous image no longer runs>'"
    )
    # the check finds what it must
    assert contract_operations(POLICY / "contract_drop_tags.py") == ["drop_column"]
    assert [contract_operations(POLICY / name) for name in EXPAND] == [[], []]
