"""pytest fixtures for daprd and the kwok Kubernetes API (filled in by the test bed work)."""
