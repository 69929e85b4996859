"""Fixtures of the backend tests live in backend_support (importable by name, unlike conftest)."""

from backend_support import *  # noqa: F403 - registers the fixtures
