#!/usr/bin/env bash
# Fails when a generated file differs from what its generator produces now (CRDs and their Helm chart copy from the
# zod schemas). Compares in memory, so it also works outside a git checkout. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
node --import tsx scripts/gen-crds.ts --check
