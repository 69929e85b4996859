"""The users' kind path, run here: `molecule test -s kind-local` on a real kind cluster.

CI stage ``containers`` (scripts/test) runs this module first and the other ``test_*_kind.py`` checks
after it, in one pytest session, so the platform converges once (the ``kind_platform`` fixture,
kind_platform.py: syntax, destroy, prepare, converge, idempotence, verify; destroy at the end).
By hand::

    .venv/bin/pytest -q -s tests/containers/test_molecule_kind.py

Here: the converge itself, and, on the converged cluster, the three Dapr fixes of issue 15 reverted in
turn, each of which must fail (dapr_reverts.py); the cluster is left as the converge made it.
"""

from __future__ import annotations

import time

import pytest
from containers import dapr_reverts

pytestmark = [pytest.mark.testbed, pytest.mark.slow, pytest.mark.timeout(7200)]


def test_molecule_kind_local_converges(kind_platform):
    # The fixture failed the session if a molecule step failed; here the steps it ran, timed.
    ran = [timing.split()[0] for timing in kind_platform.timings]
    assert ran[-4:] == ["prepare", "converge", "idempotence", "verify"], ran
    print("molecule kind-local steps: " + ", ".join(kind_platform.timings))


def test_each_dapr_fix_reverted_fails(kind_platform):
    for revert, check in dapr_reverts.REVERTS.items():
        started = time.monotonic()
        line = check(kind_platform.kubectl)
        kind_platform.timings.append(f"revert {revert} {time.monotonic() - started:.0f}s")
        print(f"--- reverted: {revert}; the failure: {line}")
