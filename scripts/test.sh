#!/usr/bin/env bash
# The whole test suite: type check, lint, generated-file drift, then every *.test.ts (unit tests beside the
# sources, integration tests under test/). Run through `npm test`, which first runs scripts/test-setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export SSL3D_CACHE="${SSL3D_CACHE:-$HOME/.cache/ssl3d}"
echo "node $(node --version)" >&2
npm run --silent typecheck
npm run --silent lint
if [ -x scripts/verify-generated.sh ]; then bash scripts/verify-generated.sh; fi
shopt -s globstar nullglob
files=(api/**/*.test.ts runtime/**/*.test.ts operator/**/*.test.ts scripts/**/*.test.ts test/**/*.test.ts)
exec node --import tsx --test --test-reporter=spec --test-timeout=1800000 "${files[@]}"
