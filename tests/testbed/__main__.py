"""``python -m testbed …`` (run with ``tests`` on PYTHONPATH; ``scripts/testbed`` does that)."""

import sys

from testbed.cli import main

sys.exit(main())
