#!/usr/bin/env bash
# The test suite in tiers, each runnable alone (`npm run test:<tier>`); `npm test` (no argument) runs them all after
# the type check, lint, formatting check (Prettier), generated-file drift check, function-length check
# (scripts/check-function-length.ts) and citation check (check-citations.sh). Tiers, by what a test file needs:
#   unit      no Python, no Go-built binaries: unit tests beside the sources (api/, runtime/, operator/, scripts/)
#             and integration tests on files only (test/contract/, ...);
#   parity    Python references (torch, nibabel, zarr-python, nnU-Net) from the venvs of scripts/setup.d/20-*.sh;
#   api       a real kube-apiserver + etcd (test/helpers/kube.ts, scripts/setup.d/30-kube-apiserver.sh);
#   delivery  the chart, Dockerfile and monitoring rules (helm, hadolint, promtool; test/integration/delivery/);
#   cluster   a real single-node cluster (scripts/cluster/, root; test/cluster/). In `npm test` only with
#             SSL3D_TEST_CLUSTER=1 (see docs/local-cluster.md for its cost) or SSL3D_TEST_KUBECONFIG set.
# A file's tier follows from its path (test/cluster/, test/integration/delivery/) or what it uses (the kube harness,
# the Python helpers); `scripts/test.sh --list TIER` prints the files of a tier.
set -euo pipefail
cd "$(dirname "$0")/.."
export SSL3D_CACHE="${SSL3D_CACHE:-$HOME/.cache/ssl3d}"
shopt -s globstar nullglob

PY_RE='helpers/(python|torch-parity|nibabel|zarr-python|preprocess-dataset)\.js|python3|pythonBin|runPython'
KUBE_RE='helpers/(kube|operator)\.js|startTestCluster'

tier_of() {
  local f="$1"
  case "$f" in
    test/cluster/*) echo cluster; return ;;
    test/integration/delivery/*) echo delivery; return ;;
  esac
  if grep -qE "$KUBE_RE" "$f"; then echo api
  elif grep -qE "$PY_RE" "$f"; then echo parity
  else echo unit; fi
}

files_of() {
  local want="$1" f
  for f in api/**/*.test.ts runtime/**/*.test.ts operator/**/*.test.ts scripts/**/*.test.ts test/**/*.test.ts; do
    [ "$(tier_of "$f")" = "$want" ] && echo "$f"
  done
  true
}

run_tier() {
  local tier="$1" files
  mapfile -t files < <(files_of "$tier")
  [ "${#files[@]}" -gt 0 ] || { echo "[test] tier $tier: no test files" >&2; return 0; }
  echo "[test] tier $tier: ${#files[@]} files" >&2
  node --import tsx --test --test-reporter=spec --test-timeout=3600000 "${files[@]}"
}

if [ "${1:-}" = "--list" ]; then files_of "$2"; exit 0; fi
if [ $# -gt 0 ]; then
  for t in "$@"; do run_tier "$t"; done
  exit 0
fi

echo "node $(node --version)" >&2
npm run --silent typecheck
npm run --silent lint
npm run --silent format:check
if [ -x scripts/verify-generated.sh ]; then bash scripts/verify-generated.sh; fi
node --import tsx scripts/check-function-length.ts
bash scripts/check-citations.sh
tiers=(unit parity api delivery)
if [ "${SSL3D_TEST_CLUSTER:-0}" = "1" ] || [ -n "${SSL3D_TEST_KUBECONFIG:-}" ]; then tiers+=(cluster); fi
status=0
for t in "${tiers[@]}"; do run_tier "$t" || status=1; done
exit "$status"
