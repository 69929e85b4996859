"""Fixtures shared by every service's tests.

The whole platform (five services, each with its daprd) is a session fixture of the test bed.
It is imported here, once: a test module that imported it itself would get a second platform
of its own, started beside the first on the same Kafka and database with the same app ids.
"""

from testbed.platform import todo_platform  # noqa: F401 - the session fixture
