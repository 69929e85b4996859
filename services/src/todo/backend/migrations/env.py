"""Alembic environment of the backend: tables and version table in schema ``backend``."""

from todo.backend.models import SCHEMA, Base
from todo.common.migrations import run_env

run_env(Base.metadata, schema=SCHEMA)
