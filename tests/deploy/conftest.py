"""Fixtures of the deployment tests live in deploy_support (importable by name, unlike conftest)."""

from deploy_support import *  # noqa: F403 - registers the fixtures
