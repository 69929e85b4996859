#!/usr/bin/env bash
# ansible-test sanity and units for the todo.platform collection, run locally (no containers).
#
#   collections/ansible_collections/todo/platform/tests/runner/run_ansible_test.sh            sanity + units
#   collections/ansible_collections/todo/platform/tests/runner/run_ansible_test.sh sanity     only sanity
#   collections/ansible_collections/todo/platform/tests/runner/run_ansible_test.sh units      only units
#
# ansible-test needs the collection's dependencies in the same ansible_collections tree, so it
# runs on a scratch copy of the collection next to a link to the kubernetes.core that the ansible
# package installed in .venv (Galaxy is not reachable here). Results stay in the scratch tree.
#
# Sanity tests with their own pinned tools (pylint, validate-modules, yamllint, pep8, ...) run in
# virtual environments that ansible-test creates under ~/.ansible/test/venv from PyPI the first
# time (a few minutes); later runs reuse them. Their pip comes from ensurepip (see below).
# Skipped sanity tests, and why:
#   shellcheck - the collection has no shell scripts (and shellcheck is not installed);
#   pslint     - PowerShell (pwsh) is not available on Linux here and the collection has no .ps1 files.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
ROOT=$(cd "$SRC/../../../.." && pwd)
export PATH="$ROOT/.venv/bin:$PATH"
export PYTHONDONTWRITEBYTECODE=1

# ansible-test bootstraps pip in its virtual environments with a script from a host outside the
# registries this machine reaches; give it a stand-in that uses ensurepip + the package index.
pip_version=$(python - <<'PY'
from ansible_test._internal.python_requirements import get_venv_packages
from ansible_test._internal.host_configs import NativePythonConfig
print(get_venv_packages(NativePythonConfig(version="3.11"))["pip"])
PY
)
get_pip="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
stand_in="$SRC/tests/runner/ansible_test_get_pip.py"
if [ ! -s "$get_pip" ] || grep -q "Stand-in for the pip bootstrap script" "$get_pip"; then
  mkdir -p "$(dirname "$get_pip")"
  cp "$stand_in" "$get_pip"
fi

k8s_core=$(cd / && python -c 'import ansible_collections.kubernetes.core as m; print(list(m.__path__)[0])')
scratch=$(mktemp -d "${TMPDIR:-/tmp}/todo-platform-ansible-test.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/ansible_collections/todo" "$scratch/ansible_collections/kubernetes"
cp -a "$SRC" "$scratch/ansible_collections/todo/platform"
# The runner itself is a tool of this repository, not part of the collection ansible-test checks.
rm -rf "$scratch/ansible_collections/todo/platform/tests/output" "$scratch/ansible_collections/todo/platform/tests/runner"
find "$scratch/ansible_collections/todo/platform" -name __pycache__ -prune -exec rm -rf {} +
ln -s "$k8s_core" "$scratch/ansible_collections/kubernetes/core"
cd "$scratch/ansible_collections/todo/platform"

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
