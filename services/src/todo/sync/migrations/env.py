"""Alembic environment of the sync service (tables and version table in schema `sync`)."""

from todo.common.migrations import run_env
from todo.sync.store import SCHEMA, metadata

run_env(metadata, schema=SCHEMA)
