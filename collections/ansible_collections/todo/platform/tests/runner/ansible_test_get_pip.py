"""Stand-in for the pip bootstrap script ansible-test downloads from a host this machine cannot reach.

ansible-test creates its sanity virtual environments without pip and then runs
``~/.ansible/test/cache/get_pip_<version>.py <pip options> pip==<version> ...``. This stand-in
does the same with the interpreter's own ensurepip and then installs the requested packages
(the pinned pip first) from the package index the machine can reach. run_ansible_test.sh copies
it into ansible-test's cache when the real script is not there.
"""

import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel"}


def main() -> int:
    saved = os.environ.get("PIP_CONFIG_FILE")
    ensurepip.bootstrap(upgrade=True)
    # ensurepip points PIP_CONFIG_FILE at /dev/null and leaves it so; the install below must see
    # the machine's pip configuration (index, certificates) again.
    if saved is None:
        os.environ.pop("PIP_CONFIG_FILE", None)
    else:
        os.environ["PIP_CONFIG_FILE"] = saved
    args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY_OPTIONS]
    return subprocess.call([sys.executable, "-m", "pip", "install", *args])


if __name__ == "__main__":
    sys.exit(main())
