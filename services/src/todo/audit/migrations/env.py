"""Alembic environment of the audit service (tables and version table in schema `audit`)."""

from todo.audit.store import SCHEMA, metadata
from todo.common.migrations import run_env

run_env(metadata, schema=SCHEMA)
