#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, idempotently: Debian packages, Python reference
# packages, a kube-apiserver binary built from the Kubernetes Go modules, ... Each concern is one file in
# scripts/setup.d/, run in name order. Builds are cached under $SSL3D_CACHE (default ~/.cache/ssl3d), outside the
# clone, so repeated runs on the same machine are fast.
set -euo pipefail
cd "$(dirname "$0")/.."
export SSL3D_CACHE="${SSL3D_CACHE:-$HOME/.cache/ssl3d}"
export SSL3D_SETUP_FOR_TESTS=1
mkdir -p "$SSL3D_CACHE"
for f in scripts/setup.d/*.sh; do
  [ -e "$f" ] || continue
  echo "[test-setup] $(basename "$f")" >&2
  bash "$f"
done
