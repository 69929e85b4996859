"""Local test bed: real PostgreSQL, Kafka, Prometheus, daprd and a Kubernetes API on loopback."""
