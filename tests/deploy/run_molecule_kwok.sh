#!/usr/bin/env bash
# CI entry point for the molecule `kwok` scenario (scripts/test stage `molecule`): runs it against
# the test bed's Kubernetes API (started on demand by the `kube` fixture, reused when
# `scripts/testbed up` already runs it). converge -> idempotence (changed=0) -> --check --diff
# (changed=0) -> verify -> cleanup.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/pytest -q -p no:cacheprovider -m "testbed" tests/deploy/test_molecule_kwok.py "$@"
