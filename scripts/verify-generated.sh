#!/usr/bin/env bash
# Fails when a generated file differs from what its generator produces now (CRDs and their Helm chart copy from the
# zod schemas; the native kernel opcode tables from native/kernels.json; the README's environment table from
# runtime/src/config/settings.ts). Compares in memory, so it also works outside a git checkout. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
node --import tsx scripts/gen-crds.ts --check
node --import tsx scripts/gen-native.ts --check
node --import tsx scripts/gen-env-table.ts --check
