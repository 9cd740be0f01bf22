#!/usr/bin/env bash
# The test suite in tiers, each runnable alone (`npm run test:<tier>`); `npm test` (no argument) runs them all after
# the type check, lint, formatting check (Prettier), generated-file drift check, function-length check
# (scripts/check-function-length.ts) and citation check (check-citations.sh). Tiers, by what a test file needs:
#   unit      no Python, no Go-built binaries: unit tests beside the sources (api/, runtime/, operator/, scripts/)
#             and integration tests on files only (test/contract/, ...);
#   parity    Python references (torch, nibabel, zarr-python, nnU-Net) from the venvs of scripts/setup.d/20-*.sh;
#   api       a real kube-apiserver + etcd (test/helpers/kube.ts, scripts/setup.d/30-kube-apiserver.sh);
#   delivery  the chart, Dockerfile and monitoring rules (helm, hadolint, promtool; test/integration/delivery/);
#   cluster   a real single-node cluster (scripts/cluster/, root; test/cluster/; docs/local-cluster.md), or the
#             cluster SSL3D_TEST_KUBECONFIG names. In `npm test` unless SSL3D_TEST_CLUSTER=0; it skips, saying so,
#             when not root and no SSL3D_TEST_KUBECONFIG is set.
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
  node --import tsx --test --test-reporter=spec --test-timeout=3600000 \
    ${SSL3D_TEST_CONCURRENCY:+--test-concurrency="$SSL3D_TEST_CONCURRENCY"} "${files[@]}"
}

# Two lanes side by side (SSL3D_TEST_LANES=1: one tier after the other). The foreground lane (unit, parity: CPU-bound,
# one test file at a time) streams to the console; the background lane (api, delivery, cluster: mostly waiting on
# servers, image builds and pods) writes one log per tier, announced when it starts and ends and printed in full at
# the end. docs/ci-time.md has the measurements behind the split.
run_bg_lane() {
  local logs="$1" t rc start
  shift
  for t in "$@"; do
    start=$SECONDS
    echo "[test] tier $t: started in the background lane" >&2
    rc=0
    run_tier "$t" >"$logs/$t.log" 2>&1 || rc=1
    echo "$rc $((SECONDS - start))" >"$logs/$t.rc"
    echo "[test] tier $t: background lane, exit $rc after $((SECONDS - start)) s (log printed at the end)" >&2
  done
}

run_lanes() {
  local logs="$1" t rc=0 bg start
  run_bg_lane "$logs" "${bg_tiers[@]}" &
  bg=$!
  for t in "${fg_tiers[@]}"; do
    start=$SECONDS
    run_tier "$t" || rc=1
    echo "[test] tier $t: foreground lane, $((SECONDS - start)) s" >&2
  done
  wait "$bg" || rc=1
  for t in "${bg_tiers[@]}"; do
    echo "[test] ===== tier $t (background lane) =====" >&2
    cat "$logs/$t.log" >&2 || true
    [ "$(cut -d' ' -f1 "$logs/$t.rc" 2>/dev/null)" = "0" ] || rc=1
  done
  for t in "${bg_tiers[@]}"; do
    read -r code secs <"$logs/$t.rc" || { code=missing secs=?; }
    echo "[test] tier $t (background lane): exit $code after $secs s" >&2
  done
  exit "$rc"
}

if [ "${1:-}" = "--list" ]; then files_of "$2"; exit 0; fi
if [ $# -gt 0 ]; then
  for t in "$@"; do run_tier "$t"; done
  exit 0
fi

case "${SSL3D_TEST_LANES:-2}" in 1 | 2) ;; *) echo "SSL3D_TEST_LANES: expected 1 or 2, got \"$SSL3D_TEST_LANES\"" >&2; exit 2 ;; esac
echo "node $(node --version)" >&2
npm run --silent typecheck
npm run --silent lint
npm run --silent format:check
if [ -x scripts/verify-generated.sh ]; then bash scripts/verify-generated.sh; fi
node --import tsx scripts/check-function-length.ts
bash scripts/check-citations.sh
fg_tiers=(unit parity)
bg_tiers=(api delivery)
if [ "${SSL3D_TEST_CLUSTER:-1}" != "0" ] || [ -n "${SSL3D_TEST_KUBECONFIG:-}" ]; then bg_tiers+=(cluster); fi
if [ "${SSL3D_TEST_LANES:-2}" = "1" ]; then
  status=0
  for t in "${fg_tiers[@]}" "${bg_tiers[@]}"; do run_tier "$t" || status=1; done
  exit "$status"
fi
run_lanes "$(mktemp -d)"
