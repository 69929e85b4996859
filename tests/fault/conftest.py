"""Fault tests run against the test bed's processes (they restart services, sidecars and Kafka);
the platform is the ``todo_platform`` fixture of the test-bed plugin."""
