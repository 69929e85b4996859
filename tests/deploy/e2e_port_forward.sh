#!/usr/bin/env bash
# Run the e2e suite (tests/e2e) against a deployed cluster through kubectl port-forward.
#   tests/deploy/e2e_port_forward.sh <kubeconfig> <context> [namespace]
set -euo pipefail
kubeconfig=$1 context=$2 namespace=${3:-todo}
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v kubectl >/dev/null || { echo "e2e_port_forward: kubectl is required (https://kubernetes.io/docs/tasks/tools/)" >&2; exit 1; }
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
port=18080
for svc in backend audit sync; do
  kubectl --kubeconfig "$kubeconfig" --context "$context" -n "$namespace" port-forward "svc/$svc" "$port:80" >/dev/null &
  pids+=("$!")
  export "E2E_${svc^^}_URL=http://127.0.0.1:$port"
  port=$((port + 1))
done
# Wait until every forward answers (bounded).
for url in "$E2E_BACKEND_URL" "$E2E_AUDIT_URL" "$E2E_SYNC_URL"; do
  for _ in $(seq 1 30); do curl -fsS "$url/healthz" >/dev/null 2>&1 && break; sleep 1; done
  curl -fsS "$url/healthz" >/dev/null || { echo "e2e_port_forward: $url/healthz does not answer" >&2; exit 1; }
done
cd "$root"
.venv/bin/pytest -q tests/e2e
