"""Alembic environment of the recurring service (tables and version table in schema `recurring`)."""

from todo.common.migrations import run_env
from todo.recurring.store import SCHEMA, metadata

run_env(metadata, schema=SCHEMA)
