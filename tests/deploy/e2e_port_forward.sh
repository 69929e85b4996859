#!/usr/bin/env bash
# Run the e2e suite (tests/e2e) against a deployed cluster through kubectl port-forward.
#   tests/deploy/e2e_port_forward.sh <kubeconfig> <context> [namespace]
set -euo pipefail
kubeconfig=$1 context=$2 namespace=${3:-todo}
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v kubectl >/dev/null || { echo "e2e_port_forward: kubectl is required (https://kubernetes.io/docs/tasks/tools/)" >&2; exit 1; }
pids=() logs=$(mktemp -d)
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$logs"; }
trap cleanup EXIT
# Local port 0: kubectl picks a free one and prints it, so two runs on one machine never collide.
for svc in backend audit sync; do
  kubectl --kubeconfig "$kubeconfig" --context "$context" -n "$namespace" port-forward "svc/$svc" ":80" \
    >"$logs/$svc" 2>&1 &
  pids+=("$!")
done
# Wait until each forward reports its port and answers (bounded).
for svc in backend audit sync; do
  port=
  for _ in $(seq 1 30); do
    port=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$logs/$svc" | head -n 1)
    [ -n "$port" ] && curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 1
  done
  [ -n "$port" ] && curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || {
    echo "e2e_port_forward: svc/$svc does not answer through port-forward: $(cat "$logs/$svc")" >&2; exit 1; }
  export "E2E_${svc^^}_URL=http://127.0.0.1:$port"
done
cd "$root"
.venv/bin/pytest -q tests/e2e
