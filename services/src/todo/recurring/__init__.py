"""The recurring service."""
