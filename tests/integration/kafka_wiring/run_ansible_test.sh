#!/usr/bin/env bash
# ansible-test sanity and units for the todo.platform collection, run locally (no containers).
#
#   tests/integration/kafka_wiring/run_ansible_test.sh            sanity + units
#   tests/integration/kafka_wiring/run_ansible_test.sh sanity     only sanity
#   tests/integration/kafka_wiring/run_ansible_test.sh units      only units
#
# Sanity tests with their own pinned tools (pylint, validate-modules, yamllint, pep8, ...) run in
# virtual environments that ansible-test itself creates under ~/.ansible/test/venv from PyPI the
# first time (a few minutes); later runs reuse them. Their pip comes from ensurepip (see below).
# Skipped sanity tests, and why:
#   shellcheck - the collection has no shell scripts (and shellcheck is not installed);
#   pslint     - PowerShell (pwsh) is not available on Linux here and the collection has no .ps1 files.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
export PATH="$ROOT/.venv/bin:$PATH"
cd "$ROOT/collections/ansible_collections/todo/platform"

# ansible-test bootstraps pip in its virtual environments with a script from a host outside the
# registries this machine reaches; give it a stand-in that uses ensurepip + the package index.
pip_version=$(python - <<'PY'
from ansible_test._internal.python_requirements import get_venv_packages
from ansible_test._internal.host_configs import NativePythonConfig
print(get_venv_packages(NativePythonConfig(version="3.11"))["pip"])
PY
)
get_pip="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ ! -s "$get_pip" ]; then
  mkdir -p "$(dirname "$get_pip")"
  cp "$ROOT/tests/integration/kafka_wiring/ansible_test_get_pip.py" "$get_pip"
fi

what=("$@")
[ ${#what[@]} -eq 0 ] && what=(sanity units)
rc=0
for w in "${what[@]}"; do
  t0=$(date +%s)
  case "$w" in
    sanity)
      ansible-test sanity --local --python 3.11 --color no \
        --skip-test shellcheck --skip-test pslint || rc=1 ;;
    units)
      ansible-test units --local --python 3.11 --color no --num-workers 2 || rc=1 ;;
    *) echo "unknown part: $w (sanity|units)" >&2; exit 2 ;;
  esac
  echo "ansible-test $w: $(( $(date +%s) - t0 ))s"
done
exit $rc
