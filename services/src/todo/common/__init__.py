"""The shared library of the five Todo services (see README.md in this directory)."""
