"""Alembic environment of the notification service (tables and version table in schema `notification`)."""

from todo.common.migrations import run_env
from todo.notification.store import SCHEMA, metadata

run_env(metadata, schema=SCHEMA)
