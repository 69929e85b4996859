"""Fault tests run against the test bed's processes (they restart services, sidecars and Kafka)."""

from testbed.platform import todo_platform  # noqa: F401 - the session fixture
