"""pytest fixtures for PostgreSQL, Kafka and Prometheus (filled in by the test bed work)."""
