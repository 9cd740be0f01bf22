#!/usr/bin/env bash
# `npm run verify`: the quick pre-push check that needs neither Python nor Go builds nor root: type check, lint,
# formatting (Prettier), generated files (crds/, chart CRDs) in sync with the schemas, no function over 120 lines,
# citations inside the repository (check-citations.sh), and the unit tier of the tests (scripts/test.sh).
# The full suite is `npm test`.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent typecheck
npm run --silent lint
npm run --silent format:check
bash scripts/verify-generated.sh
node --import tsx scripts/check-function-length.ts
bash scripts/check-citations.sh
bash scripts/test.sh unit
