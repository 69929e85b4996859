"""Fixtures shared by every service's tests.

The whole platform (five services, each with its daprd) is the session fixture ``todo_platform``
of the test-bed plugin (tests/testbed/pytest_plugin.py). Never import it into a test module or a
conftest: pytest would start a second platform beside the first, on the same Kafka and database
with the same app ids.
"""
