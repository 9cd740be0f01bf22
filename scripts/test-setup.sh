#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, idempotently: Debian packages, Python reference
# packages, a kube-apiserver binary built from the Kubernetes Go modules, ... Each concern is one file in
# scripts/setup.d/, run in name order. Builds are cached under $SSL3D_CACHE (default ~/.cache/ssl3d), outside the
# clone, so repeated runs on the same machine are fast.
# Two lanes on a cold machine: the steps numbered below 20 (Debian packages every later step relies on) run first;
# then the steps marked `# setup-lane: background` (long CPU-bound Go builds) run one after the other beside the rest
# (downloads, pip, apt), their output in a log printed when they end. SSL3D_SETUP_LANES=1 runs every step in order.
set -euo pipefail
cd "$(dirname "$0")/.."
export SSL3D_CACHE="${SSL3D_CACHE:-$HOME/.cache/ssl3d}"
export SSL3D_SETUP_FOR_TESTS=1
mkdir -p "$SSL3D_CACHE"

run_step() {
  local f="$1" start=$SECONDS
  echo "[test-setup] $(basename "$f")" >&2
  bash "$f"
  [ $((SECONDS - start)) -lt 5 ] || echo "[test-setup] $(basename "$f"): $((SECONDS - start)) s" >&2
}

first=() fg=() bg=()
for f in scripts/setup.d/*.sh; do
  [ -e "$f" ] || continue
  if [[ "$(basename "$f")" < "20" ]]; then first+=("$f")
  elif [ "${SSL3D_SETUP_LANES:-2}" != "1" ] && grep -q '^# setup-lane: background' "$f"; then bg+=("$f")
  else fg+=("$f"); fi
done
for f in "${first[@]}"; do run_step "$f"; done
log="$(mktemp)"
( set -e; for f in "${bg[@]}"; do run_step "$f"; done ) >"$log" 2>&1 &
bg_pid=$!
status=0
for f in "${fg[@]}"; do run_step "$f" || { status=1; break; }; done
wait "$bg_pid" || status=1
cat "$log" >&2
rm -f "$log"
exit "$status"
